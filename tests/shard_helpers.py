"""A small paired manifest with shared images and captions, for the shard tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = ["red", "green", "blue", "black", "white", "grey", "pink", "brown"]
SPLITS = ["train"] * 16 + ["val"] * 4 + ["test"] * 4


def small_manifest(root: Path) -> Path:
    """24 rows: 16 train, 4 val, 4 test; images and captions shared by pairs of rows; ids that
    are not tar-safe (dots, slashes, spaces); a meta_ column."""
    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i, split in enumerate(SPLITS):
        picture = images / f"pic{i // 2}.png"  # rows 2k and 2k+1 share an image
        if not picture.exists():
            pixels = rng.integers(0, 256, size=(12 + i % 3, 14, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(picture)
        colour = COLOURS[(i // 3) % len(COLOURS)]  # captions shared by threes
        rows.append(
            {
                "id": f"row {i}.v1/x" if i % 5 == 0 else f"r{i:02d}",
                "image": f"images/{picture.name}",
                "text": f"a {colour} square",
                "label": colour,
                "split": split,
                "meta_source": f"s{i % 4}",
            }
        )
    path = root / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
