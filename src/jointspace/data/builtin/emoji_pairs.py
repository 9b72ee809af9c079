"""Built-in ``emoji-pairs``: two emoji side by side, captioned "A left of B" — word order matters.

Every unordered pair appears in both orders within one split, so a model that reads captions
and images as bags of words (as bi-encoders tend to, Yuksekgonul et al. 2023) cannot tell an
image from its mirror. Val and test pairs are new combinations of emoji that training shows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFont

from jointspace.atomic import atomic_dir
from jointspace.data.builtin.emoji import FONT, FONT_SIZE, load_emoji, png_bytes, render
from jointspace.data.builtin.target import dataset_dir, reuse_or_check

GROUPS = ("Animals & Nature", "Food & Drink", "Travel & Places", "Objects")
EMOJI, PAIRS = 120, 1200  # emoji drawn, unordered pairs drawn (each gives two images)
FRACTIONS = (("train", 0.8), ("val", 0.1), ("test", 0.1))
SEED = 0


def pick_emoji(count: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """``count`` single-glyph emoji (no skin-tone or gender variants) as (chars, name)."""
    pool = [(e.chars, e.name) for e in load_emoji() if e.group in GROUPS and ":" not in e.name]
    return [pool[i] for i in sorted(rng.choice(len(pool), count, replace=False))]


def side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    """A square: ``left`` in the left half, ``right`` in the right half, centred vertically."""
    half = left.width
    canvas = Image.new("RGB", (2 * half, 2 * half), (255, 255, 255))
    canvas.paste(left, (0, half // 2))
    canvas.paste(right, (half, half // 2))
    return canvas


@dataclass(frozen=True)
class Pair:
    """One image: the left and right emoji (indices into the glyphs, names) and its split."""

    left: int
    right: int
    left_name: str
    right_name: str
    split: str
    image: Image.Image

    @property
    def key(self) -> str:
        return f"{self.left:03d}-{self.right:03d}"


def render_pairs(size: int = 64) -> list[Pair]:
    """Every image of the dataset, seeded: each drawn pair in both orders, split by pair."""
    rng = np.random.default_rng(SEED)
    font = ImageFont.truetype(str(FONT), FONT_SIZE, layout_engine=ImageFont.Layout.RAQM)
    glyphs = [(name, render(chars, font, size // 2)) for chars, name in pick_emoji(EMOJI, rng)]
    glyphs = [(name, image) for name, image in glyphs if image is not None]
    pairs = list(itertools.combinations(range(len(glyphs)), 2))
    chosen = [pairs[i] for i in rng.choice(len(pairs), PAIRS, replace=False)]
    cut_train = round(FRACTIONS[0][1] * PAIRS)
    cut_val = cut_train + round(FRACTIONS[1][1] * PAIRS)
    images = []
    for rank, pair in enumerate(chosen):
        split = "train" if rank < cut_train else "val" if rank < cut_val else "test"
        for a, b in (pair, pair[::-1]):
            (name_a, left), (name_b, right) = glyphs[a], glyphs[b]
            images.append(Pair(a, b, name_a, name_b, split, side_by_side(left, right)))
    return images


def build_emoji_pairs(
    root: Path | None = None, *, force: bool = False, size: int = 64, overwrite: bool = False
) -> Path:
    """Render the dataset under ``root/emoji-pairs-SIZE`` once (atomically); return its manifest."""
    target = dataset_dir(root, f"emoji-pairs-{size}")
    manifest = target / "manifest.csv"
    if reuse_or_check(target, force=force, overwrite=overwrite):
        return manifest
    rows = []
    with atomic_dir(target) as tmp:
        (tmp / "images").mkdir()
        for pair in render_pairs(size):
            (tmp / "images" / f"{pair.key}.png").write_bytes(png_bytes(pair.image))
            rows.append(
                {
                    "id": pair.key,
                    "image": f"images/{pair.key}.png",
                    "text": f"{pair.left_name} left of {pair.right_name}",
                    "label": pair.left_name,
                    "split": pair.split,
                }
            )
        pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False, lineterminator="\n")
    return manifest
