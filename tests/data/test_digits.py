import hashlib
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from jointspace.data import build_dataset, read_manifest, resolve_manifest


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.*")}


def test_digits_manifest_is_a_standard_manifest(digits_manifest):
    manifest = read_manifest(digits_manifest, required=("text", "image"))
    assert len(manifest) == 3 * 1797 and not manifest.skipped
    assert len(set(manifest.column("image"))) == 1797
    assert set(manifest.column("label")) == {
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
    }
    assert len(set(manifest.column("text"))) > 80  # varied captions, not one per class


def test_held_out_classes_only_in_zeroshot(digits_manifest):
    manifest = read_manifest(digits_manifest)
    for row in manifest.rows:
        assert (row["label"] in ("eight", "nine")) == (row["split"] == "zeroshot")
    images = {s: set(manifest.split(s).column("image")) for s in ("train", "val", "test")}
    assert not images["train"] & images["val"] and not images["train"] & images["test"]
    assert not images["val"] & images["test"]
    sizes = {s: len(v) for s, v in images.items()}
    assert 0.65 < sizes["train"] / sum(sizes.values()) < 0.75


def test_pngs_hold_the_real_pixels(digits_manifest):
    pixels = np.asarray(Image.open(digits_manifest.parent / "images" / "0007.png"))
    expected = np.rint(load_digits().images[7] * 255 / 16).astype(np.uint8)
    assert pixels.shape == (8, 8) and np.array_equal(pixels, expected)


def test_build_is_deterministic_and_cached(tmp_path, digits_manifest):
    again = build_dataset("digits", root=tmp_path)
    assert digest(again.parent) == digest(digits_manifest.parent)
    again.write_text("cached")
    assert build_dataset("digits", root=tmp_path).read_text() == "cached"


def test_builtin_specs_resolve(tmp_path, monkeypatch):
    monkeypatch.setenv("JOINTSPACE_CACHE", str(tmp_path))
    path = resolve_manifest("builtin:digits")
    assert path == tmp_path / "datasets" / "digits" / "manifest.csv" and path.is_file()


def test_each_image_has_three_distinct_captions_naming_its_digit(digits_manifest):
    manifest = read_manifest(digits_manifest)
    by_image: dict[str, list[dict[str, str]]] = {}
    for row in manifest.rows:
        by_image.setdefault(row["image"], []).append(row)
    words = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    for image, rows in by_image.items():
        stem = image.removeprefix("images/").removesuffix(".png")
        assert [r["id"] for r in rows] == [f"{stem}-{j}" for j in range(3)]
        assert len({r["text"] for r in rows}) == 3 and len({r["split"] for r in rows}) == 1
        digit = words.index(rows[0]["label"])
        assert all(str(digit) in r["text"] or words[digit] in r["text"] for r in rows)


def test_cache_dir_comes_from_the_environment(tmp_path, monkeypatch):
    from jointspace.data import default_cache_dir

    monkeypatch.setenv("JOINTSPACE_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.setenv("JOINTSPACE_CACHE", "")
    assert default_cache_dir() == Path.home() / ".cache" / "jointspace"


def test_unknown_builtin_and_missing_manifest_are_clear(tmp_path, monkeypatch):
    import pytest

    from jointspace.data import ManifestError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ManifestError, match=r"unknown dataset 'nope'.*digits"):
        build_dataset("nope")
    with pytest.raises(ManifestError, match=r"manifest not found: gone.csv \(built-in datasets: "):
        resolve_manifest("gone.csv")
