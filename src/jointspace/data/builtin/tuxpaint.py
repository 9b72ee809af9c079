"""Built-in ``tuxpaint``: Tux Paint's stamps as image + English description + sound effect.

Source is the Debian package ``tuxpaint-stamps-default`` (no download at run time). Every stamp
with a PNG and a description is a row; its sound effect (``NAME.ogg``) fills the audio cell where
the stamp has one, otherwise the cell is empty. SVG-only stamps are skipped (no SVG renderer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile
from PIL import Image

from jointspace.atomic import atomic_dir
from jointspace.data.audio import AudioError, load_audio
from jointspace.data.builtin.target import dataset_dir, reuse_or_check
from jointspace.errors import MissingPackageError
from jointspace.progress import logger

PACKAGE = "tuxpaint-stamps-default"
STAMPS = Path("/usr/share/tuxpaint/stamps")
STYLE_FOLDERS = ("cartoon",)  # a drawing style inside a category, not a category of its own
CATEGORY_DEPTH = 2  # animals/birds; deeper folders (alphabets/spanish/filled/…) hold a few each
FRACTIONS = (("train", 0.8), ("val", 0.1), ("test", 0.1))
SEED = 0
SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Stamp:
    """One stamp: its name relative to the stamps folder, PNG, description and sound (or None)."""

    name: str
    image: Path
    text: str
    sound: Path | None

    @property
    def category(self) -> str:
        """The stamp's top two folders, style folders left out (``animals/birds``)."""
        parts = Path(self.name).parent.parts
        kept = [p for i, p in enumerate(parts) if i == 0 or p not in STYLE_FOLDERS]
        return "/".join(kept[:CATEGORY_DEPTH])


def check_package(root: Path | None = None) -> None:
    """Name the Debian package and how to install it when the stamps are missing."""
    root = root or STAMPS
    if not root.is_dir():
        raise MissingPackageError(
            f"the tuxpaint dataset needs the Debian package {PACKAGE} ({root} is missing); "
            f"run `make system-deps` or `apt-get install {PACKAGE}`"
        )


def description(path: Path) -> str:
    """The English description: the first line of the stamp's ``.txt`` (translations follow)."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return " ".join(lines[0].split()) if lines else ""


def load_stamps(root: Path | None = None) -> list[Stamp]:
    """Every stamp with a PNG and a non-empty description, sorted by name."""
    root = root or STAMPS
    check_package(root)
    stamps = []
    for image in sorted(root.rglob("*.png")):
        text_file = image.with_suffix(".txt")
        text = description(text_file) if text_file.is_file() else ""
        if not text:
            continue  # mirrored and alternate frames have no description of their own
        sound = image.with_suffix(".ogg")
        name = image.relative_to(root).with_suffix("").as_posix()
        stamps.append(Stamp(name, image, text, sound if sound.is_file() else None))
    skipped = sum(
        1 for svg in root.rglob("*.svg") if not svg.with_suffix(".png").is_file()
    )  # counted so the log says what the dataset leaves out
    logger().info(
        "tuxpaint: %d stamps with PNG and description; %d SVG-only skipped", len(stamps), skipped
    )
    return stamps


def assign_splits(stamps: list[Stamp], seed: int = SEED) -> list[str]:
    """Split 80/10/10 by a seeded permutation; stamps with one description share a split."""
    groups = sorted({s.text.lower() for s in stamps})  # "A frog." twice would leak otherwise
    order = np.random.default_rng(seed).permutation(len(groups))
    cut_train = round(FRACTIONS[0][1] * len(groups))
    cut_val = cut_train + round(FRACTIONS[1][1] * len(groups))
    split_of = {}
    for rank, index in enumerate(order):
        split_of[groups[index]] = (
            "train" if rank < cut_train else "val" if rank < cut_val else "test"
        )
    return [split_of[s.text.lower()] for s in stamps]


def square_on_white(path: Path, size: int) -> Image.Image:
    """The stamp flattened onto white, centred in a square, resized to ``size``×``size`` RGB."""
    with Image.open(path) as source:
        stamp = source.convert("RGBA")
    side = max(stamp.size)
    canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    canvas.alpha_composite(stamp, ((side - stamp.width) // 2, (side - stamp.height) // 2))
    return canvas.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


def write_clip(sound: Path, path: Path) -> bool:
    """Decode the sound to a 16 kHz mono WAV; False when it cannot be read."""
    try:
        wave = load_audio(sound, SAMPLE_RATE)
    except AudioError:
        return False
    soundfile.write(path, wave, SAMPLE_RATE, subtype="PCM_16")
    return True


def build_tuxpaint(
    root: Path | None = None,
    *,
    force: bool = False,
    overwrite: bool = False,
    size: int = 64,
    limit: int | None = None,
) -> Path:
    """Build the dataset under ``root/tuxpaint-SIZE`` once (atomically); return its manifest."""
    target = dataset_dir(root, f"tuxpaint-{size}")
    if limit is not None:
        target = target.with_name(f"{target.name}-first{limit}")
    manifest = target / "manifest.csv"
    if reuse_or_check(target, force=force, overwrite=overwrite):
        return manifest
    stamps = load_stamps()
    splits = assign_splits(stamps)
    rows, unreadable = [], 0
    with atomic_dir(target) as tmp:
        (tmp / "images").mkdir()
        (tmp / "clips").mkdir()
        for i, (stamp, split) in enumerate(list(zip(stamps, splits, strict=True))[:limit]):
            square_on_white(stamp.image, size).save(tmp / "images" / f"{i:04d}.png")
            audio = ""
            if stamp.sound is not None:
                if write_clip(stamp.sound, tmp / "clips" / f"{i:04d}.wav"):
                    audio = f"clips/{i:04d}.wav"
                else:
                    unreadable += 1
            rows.append(
                {
                    "id": f"{i:04d}",
                    "image": f"images/{i:04d}.png",
                    "text": stamp.text,
                    "audio": audio,
                    "label": stamp.category,
                    "split": split,
                    "meta_stamp": stamp.name,
                }
            )
        if unreadable:
            logger().warning(
                "tuxpaint: %d sounds could not be decoded; their audio is empty", unreadable
            )
        pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False, lineterminator="\n")
    return manifest
