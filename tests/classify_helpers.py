"""A labelled manifest whose label is an XOR of an image colour and a word of the text, and tiny
random frozen towers to classify it: one modality alone is at chance, both together are not."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from jointspace.classifier.config import ClassifyConfig
from jointspace.config import ModelConfig, PartConfig, TowerConfig

FILLERS = ["small", "big", "round", "square", "old", "new", "shiny", "dull"]
SPLITS = {"train": 240, "val": 60, "test": 60}


def xor_label(red: bool, hot: bool) -> str:
    return "yes" if red != hot else "no"


def write_xor_manifest(root: Path, *, seed: int = 0, rows=None, extra=None) -> Path:
    """``root/labels.csv``: id, image (a solid colour, jittered), text, label, split, meta_kind.

    ``label`` = "yes" when exactly one of (the image is red, the text says "hot") holds.
    ``rows`` edits the row dicts before writing (e.g. to break a label); ``extra`` adds rows.
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    n = 0
    for split, count in SPLITS.items():
        for _ in range(count):
            red, hot = bool(rng.integers(2)), bool(rng.integers(2))
            base = np.array([200, 30, 30] if red else [30, 30, 200], dtype=np.int64)
            colour = np.clip(base + rng.integers(-25, 26, size=3), 0, 255).astype(np.uint8)
            name = f"images/{n:04d}.png"
            Image.fromarray(np.tile(colour, (16, 16, 1))).save(root / name)
            words = list(rng.choice(FILLERS, size=2, replace=False))
            words.insert(int(rng.integers(3)), "hot" if hot else "cold")
            records.append(
                {
                    "id": f"r{n:04d}",
                    "image": name,
                    "text": " ".join(words),
                    "label": xor_label(red, hot),
                    "split": split,
                    "meta_kind": "red" if red else "blue",
                }
            )
            n += 1
    if rows is not None:
        records = rows(records)
    records += extra or []
    path = root / "labels.csv"
    columns = list(dict.fromkeys(k for r in records for k in r))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(records)
    return path


def tiny_towers() -> ModelConfig:
    """Random text and image towers small enough to encode hundreds of inputs in a second."""
    text = dict(width=16, depth=1, heads=2, max_len=8, vocab_size=60)
    return ModelConfig(
        embed_dim=8,
        towers={
            "text": TowerConfig("transformer", text),
            "image": TowerConfig("cnn", dict(image_size=16, widths=[8, 16])),
        },
    )


def xor_config(
    manifest: Path, head: str = "attention", modalities=("text", "image"), **train
) -> ClassifyConfig:
    config = ClassifyConfig.from_dict(
        {
            "data": {
                "manifest": str(manifest),
                "modalities": list(modalities),
                "group_column": "meta_kind",
            },
            "towers": {"model": {"embed_dim": 8}},
            "head": {"name": head, "params": {"width": 32}},
            "train": {"epochs": 40, "batch_size": 32, "lr": 3e-3, "progress": False},
        }
    )
    config.towers.model = tiny_towers()
    config.head = PartConfig(head, {"width": 32})
    for key, value in train.items():
        setattr(config.train, key, value)
    return config
