"""The three-modality manifest with absent cells beside a copy without the incomplete rows, and
an untrained model for it: a program that uses only complete rows must score both alike."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import torch

from absent_helpers import three_modality_config, write_three_modality_manifest
from jointspace.models.build import build_model


def holed_and_clean(folder: Path, needed: Sequence[str], rows: int = 48) -> tuple[Path, Path, int]:
    """``m.csv`` (rows ``i % 5 == 0`` in split test, the rest train; some audio and texts empty)
    and ``clean.csv`` without the rows lacking one of ``needed``; and how many those are."""
    path = write_three_modality_manifest(folder, rows, lone_image_rows=(1, 4, 6, 9))
    with path.open() as handle:
        records = list(csv.DictReader(handle))
    for i, r in enumerate(records):
        r["split"] = "test" if i % 5 == 0 else "train"
    _write(path, records)
    complete = [r for r in records if all(r[m].strip() for m in needed)]
    clean = folder / "clean.csv"
    _write(clean, complete)
    return path, clean, len(records) - len(complete)


def _write(path: Path, records: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(records[0]))
        writer.writeheader()
        writer.writerows(records)


def untrained_model(manifest: Path):
    """Text, image and audio towers, seeded, with the manifest's texts as the corpus."""
    torch.manual_seed(0)
    with manifest.open() as handle:
        texts = [r["text"] for r in csv.DictReader(handle) if r["text"].strip()]
    return build_model(three_modality_config().model, corpus=texts).eval()
