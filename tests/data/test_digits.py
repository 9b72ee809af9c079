import hashlib

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
