"""Built-in ``digits``: scikit-learn's 1,797 real 8×8 handwritten digits as PNGs + a manifest."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from jointspace.atomic import atomic_dir
from jointspace.data.builtin.target import dataset_dir, reuse_or_check

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = (
    "a handwritten {d}",
    "the digit {w}",
    "a handwritten number {w}",
    "the number {d}",
    "a scanned digit {d}",
    "{w}, written by hand",
    "an image of the digit {w}",
    "a small picture of a {d}",
    "the numeral {w}",
    "a hand-drawn {d}",
)
HELD_OUT = (8, 9)  # whole classes kept out of training, for zero-shot evaluation
CAPTIONS_PER_IMAGE = 3
FRACTIONS = (("train", 0.70), ("val", 0.15), ("test", 0.15))
SEED = 0


def build_digits(root: Path | None = None, *, force: bool = False, overwrite: bool = False) -> Path:
    """Write the dataset under ``root/digits`` once (atomically) and return its manifest path."""
    return build_from_digits("digits", manifest_rows, root, force=force, overwrite=overwrite)


def build_from_digits(
    name: str,
    rows_of: Callable[[np.ndarray], list[dict[str, str]]],
    root: Path | None = None,
    *,
    force: bool = False,
    overwrite: bool = False,
) -> Path:
    """The digits as PNGs plus a manifest of ``rows_of(classes)`` under ``root/name``, once."""
    from sklearn.datasets import load_digits

    target = dataset_dir(root, name)
    manifest = target / "manifest.csv"
    if reuse_or_check(target, force=force, overwrite=overwrite):
        return manifest
    digits = load_digits()
    with atomic_dir(target) as tmp:
        (tmp / "images").mkdir()
        for i, pixels in enumerate(digits.images):
            (tmp / "images" / f"{i:04d}.png").write_bytes(png_bytes(pixels))
        rows = rows_of(digits.target)
        pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False, lineterminator="\n")
    return manifest


def png_bytes(pixels: np.ndarray) -> bytes:
    """8-bit grayscale PNG of sklearn's 0–16 pixel values, with no metadata (deterministic)."""
    array = np.rint(pixels * 255 / 16).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def assign_splits(
    classes: np.ndarray, rng: np.random.Generator, held_out: tuple[int, ...] = HELD_OUT
) -> list[str]:
    """Held-out classes → ``zeroshot``; each other class split 70/15/15 by image."""
    splits = ["zeroshot"] * len(classes)
    for digit in sorted(set(classes.tolist()) - set(held_out)):
        members = rng.permutation(np.flatnonzero(classes == digit))
        cut_train = round(FRACTIONS[0][1] * len(members))
        cut_val = cut_train + round(FRACTIONS[1][1] * len(members))
        for position, index in enumerate(members):
            name = "train" if position < cut_train else "val" if position < cut_val else "test"
            splits[index] = name
    return splits


def manifest_rows(classes: np.ndarray) -> list[dict[str, str]]:
    """Three distinct templated captions per image, one manifest row each."""
    rng = np.random.default_rng(SEED)
    splits = assign_splits(classes, rng)
    rows = []
    for i, digit in enumerate(classes.tolist()):
        picks = rng.choice(len(TEMPLATES), CAPTIONS_PER_IMAGE, replace=False)
        for j, t in enumerate(picks):
            text = TEMPLATES[t].format(d=digit, w=WORDS[digit])
            rows.append(
                {
                    "id": f"{i:04d}-{j}",
                    "image": f"images/{i:04d}.png",
                    "text": text,
                    "label": WORDS[digit],
                    "split": splits[i],
                }
            )
    return rows
