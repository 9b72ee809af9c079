"""A manifest's rows as MVAE inputs: splits (with ``data.resplit``), the training vocabulary,
and per-split tensors with presence masks (an empty cell is an absent modality)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from jointspace.data import open_manifest, resolve_manifest
from jointspace.data.manifest import Manifest, ManifestError
from jointspace.errors import InputError
from jointspace.generative.config import MvaeConfig
from jointspace.generative.forms import InputForms, Vocabulary
from jointspace.progress import item_progress

SHARES = (0.70, 0.85)  # data.resplit: below 70 % train, below 85 % val, the rest test


@dataclass
class RowSet:
    """One split: every modality's rows ``[N, *shape]`` (zeros where absent) and ``present``."""

    inputs: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    ids: list[str]
    labels: list[str] | None  # the manifest's label column, when it has one

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, rows: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The inputs and presence masks of ``rows``; modalities absent from all are left out."""
        used = [m for m in self.inputs if bool(self.present[m][rows].any())]
        return {m: self.inputs[m][rows] for m in used}, {m: self.present[m][rows] for m in used}


def resplit_share(value: str) -> int:
    """0 (train), 1 (val) or 2 (test) for a group value: a stable hash, the same everywhere."""
    fraction = int.from_bytes(hashlib.sha256(value.encode()).digest()[:8], "big") / 2**64
    return sum(fraction >= s for s in SHARES)


def split_rows(manifest: Manifest, config: MvaeConfig) -> dict[str, list[dict[str, str]]]:
    """``{"train"|"val"|"test": rows}``; the resplit splits' rows shared out among the three."""
    data = config.data
    if "split" not in manifest.columns:
        raise ManifestError(f"{manifest.path}: no 'split' column; an MVAE needs a train split")
    names = {"train": data.train_split, "val": data.val_split, "test": data.test_split}
    out: dict[str, list[dict[str, str]]] = {k: [] for k, v in names.items() if v}
    by_name = {v: k for k, v in names.items() if v}
    resplit = set(data.resplit)
    if resplit and data.group_column not in manifest.columns:
        raise ManifestError(
            f"{manifest.path}: no column {data.group_column!r} (data.group_column) to resplit by"
        )
    for row in manifest.rows:
        if row["split"] in resplit:
            key = ("train", "val", "test")[resplit_share(row[data.group_column])]
            if key in out:
                out[key].append(row)
        elif row["split"] in by_name:
            out[by_name[row["split"]]].append(row)
    if not out["train"]:
        raise ManifestError(
            f"{manifest.path}: no rows in the train split {data.train_split!r} "
            f"(splits: {', '.join(manifest.splits())})"
        )
    return {k: v for k, v in out.items() if v}


def open_rows(config: MvaeConfig, data: str | Path | None = None) -> tuple[Manifest, dict]:
    """The manifest (``data`` or ``config.data.manifest``) and its rows by split."""
    manifest = open_manifest(resolve_manifest(data or config.data.manifest))
    if missing := [m for m in config.modalities if m not in manifest.columns]:
        raise ManifestError(
            f"{manifest.path}: no {missing[0]!r} column, which modalities.{missing[0]} reads "
            f"(columns: {', '.join(manifest.columns)})"
        )
    return manifest, split_rows(manifest, config)


def build_vocabulary(config: MvaeConfig, train: list[dict[str, str]]) -> Vocabulary | None:
    """The text vocabulary of the training rows (None without a text modality)."""
    if "text" not in config.modalities:
        return None
    spec = config.modalities["text"]
    vocab = Vocabulary.build(
        (r["text"] for r in train if r["text"]), spec.max_vocab, spec.min_count
    )
    if not len(vocab):
        raise InputError("text: the training rows hold no word to build a vocabulary from")
    return vocab


def load_rows(
    manifest: Manifest, rows: list[dict[str, str]], forms: InputForms, *, desc: str, progress: bool
) -> RowSet:
    """Every row's inputs through ``forms``; each file is read once however many rows share it."""
    modalities = list(forms.specs)
    cache: dict[tuple[str, str], torch.Tensor | None] = {}
    columns: dict[str, list[torch.Tensor | None]] = {m: [] for m in modalities}
    with item_progress(len(rows), desc, unit="row", enabled=progress) as advance:
        for row in rows:
            for m in modalities:
                cell = row.get(m, "")
                if (m, cell) not in cache:
                    cache[(m, cell)] = _cell(manifest, m, cell, forms)
                columns[m].append(cache[(m, cell)])
            if all(columns[m][-1] is None for m in modalities):
                raise ManifestError(
                    f"{manifest.path}: row {row['id']!r} has none of {', '.join(modalities)}"
                )
            advance(1)
    inputs, present = {}, {}
    for m in modalities:
        filler = torch.zeros(forms.shape(m))
        present[m] = torch.tensor([v is not None for v in columns[m]])
        inputs[m] = torch.stack([filler if v is None else v for v in columns[m]])
    labels = [r["label"] for r in rows] if "label" in manifest.columns else None
    return RowSet(inputs, present, [r["id"] for r in rows], labels)


def _cell(manifest: Manifest, modality: str, cell: str, forms: InputForms) -> Any:
    if not cell.strip():
        return None  # an empty cell: the modality is absent from this row
    if modality == "text":
        assert forms.vocab is not None
        counts = forms.vocab.counts(cell)
        # No known word (a val or test text) carries nothing to encode: absent, not zeros.
        return counts if bool(counts.any()) else None
    return forms(modality, manifest.resolve(cell))
