import hashlib

import pytest
import soundfile
from PIL import Image

from jointspace.data import build_dataset, read_manifest
from jointspace.data.builtin import tuxpaint
from jointspace.data.manifest import ManifestError
from jointspace.errors import JointspaceError, MissingPackageError


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_dataset("tuxpaint", root=tmp_path_factory.mktemp("tuxpaint"))


@pytest.fixture(scope="module")
def manifest(built):
    return read_manifest(built, required=("image", "text"))


def package_stamps():
    """Counted straight from the package: PNG stamps with a description, and those with a sound."""
    described = [
        png
        for png in tuxpaint.STAMPS.rglob("*.png")
        if png.with_suffix(".txt").is_file()
        and png.with_suffix(".txt").read_text(encoding="utf-8").strip()
    ]
    sounded = [png for png in described if png.with_suffix(".ogg").is_file()]
    return described, sounded


def test_one_row_per_described_png_stamp_and_audio_where_it_has_a_sound(manifest):
    described, sounded = package_stamps()
    assert len(manifest) == len(described) == 785  # tuxpaint-stamps-default 2022.06.04-1
    audio = [a for a in manifest.column("audio") if a]
    assert len(audio) == len(sounded) == 131
    stamps = {row["meta_stamp"] for row in manifest.rows}
    assert stamps == {p.relative_to(tuxpaint.STAMPS).with_suffix("").as_posix() for p in described}


def test_every_image_opens_as_a_square_rgb(manifest):
    for path in set(manifest.column("image")):
        with Image.open(manifest.resolve(path)) as image:
            assert image.mode == "RGB" and image.size == (64, 64)


def test_every_clip_decodes_at_16khz_with_positive_duration(manifest):
    for path in (a for a in manifest.column("audio") if a):
        info = soundfile.info(manifest.resolve(path))
        assert info.samplerate == 16_000 and info.channels == 1 and info.duration > 0.1


def test_text_is_the_english_description_and_labels_are_category_folders(manifest):
    by_stamp = {row["meta_stamp"]: row for row in manifest.rows}
    assert by_stamp["animals/birds/blackbird"]["text"] == "A blackbird."
    assert by_stamp["animals/birds/blackbird"]["audio"]  # blackbird.ogg: birdsong
    assert by_stamp["animals/birds/blackbird"]["label"] == "animals/birds"
    for row in manifest.rows:  # the untagged first line is English; "de.utf8=…" lines follow
        source = (tuxpaint.STAMPS / row["meta_stamp"]).with_suffix(".txt")
        first = source.read_text(encoding="utf-8").splitlines()[0]
        assert row["text"] == " ".join(first.split()) and row["text"] and ".utf8=" not in first
    mars = by_stamp["space/planets/4_mars"]["text"]
    assert mars == "Mars—the red planet. It’s just beyond earth."
    assert "cartoon" not in {label.split("/")[-1] for label in manifest.column("label")}


def test_splits_are_disjoint_by_stamp_and_by_description(manifest):
    counts = {s: len(manifest.split(s)) for s in ("train", "val", "test")}
    assert sum(counts.values()) == len(manifest)
    assert counts["test"] > 0.08 * len(manifest) and counts["val"] > 0.08 * len(manifest)
    split_of = {}
    for row in manifest.rows:
        split_of.setdefault(row["text"].lower(), set()).add(row["split"])
    assert all(len(s) == 1 for s in split_of.values())  # two "A frog." stamps share a split
    assert len({row["meta_stamp"] for row in manifest.rows}) == len(manifest)


def digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.*"))
    }


def test_build_is_deterministic(tmp_path, built):
    first = build_dataset("tuxpaint", root=tmp_path / "a", limit=60)
    second = build_dataset("tuxpaint", root=tmp_path / "b", limit=60)
    assert digest(first.parent) == digest(second.parent)
    assert any(p.startswith("clips/") for p in digest(first.parent))
    head = built.read_text().splitlines()[:61]  # a limited build is the full build's first rows
    assert first.read_text().splitlines() == head


def test_empty_audio_cells_mean_absent_audio(built):
    rows = read_manifest(built, required=("image", "text", "audio"))
    assert sum(rows.has(i, "audio") for i in range(len(rows))) == 131 < len(rows)
    with pytest.raises(ManifestError, match="empty audio path"):  # audio alone: every row needs it
        read_manifest(built, required=("audio",))
    with_audio = read_manifest(built, required=("audio",), skip_bad=True)
    assert len(with_audio) == 131 and all(with_audio.column("audio"))


def test_missing_package_names_it_and_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(tuxpaint, "STAMPS", tmp_path / "absent")
    with pytest.raises(MissingPackageError) as caught:
        build_dataset("tuxpaint", root=tmp_path / "out")
    message = str(caught.value)
    assert isinstance(caught.value, JointspaceError) and "\n" not in message
    assert "tuxpaint-stamps-default" in message and "make system-deps" in message
    assert not (tmp_path / "out" / "tuxpaint-64").exists()
