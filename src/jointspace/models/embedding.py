"""A manifest's distinct items as vectors: the one place where manifest values meet a model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jointspace.data.manifest import Manifest
from jointspace.data.source import Item, ItemSource
from jointspace.models.joint import JointModel


def distinct_items(manifest: Manifest, modality: str) -> tuple[list[str], list[dict[str, str]]]:
    """Distinct values of a modality column, first seen first, and the first row holding each;
    empty cells (the row lacks that modality) are no items."""
    manifest.column(modality)  # a missing column is a ManifestError naming the file, not a KeyError
    first: dict[str, dict[str, str]] = {}
    for row in manifest.rows:
        if row[modality]:
            first.setdefault(row[modality], row)
    return list(first), list(first.values())


def item_inputs(manifest: Manifest, modality: str, values: Sequence[str]) -> list[Any]:
    """What a tower takes: texts as they are, file columns as paths resolved by the manifest."""
    return list(values) if modality == "text" else [manifest.resolve(v) for v in values]


def embed_items(
    model: JointModel,
    manifest: Manifest,
    modality: str,
    values: Sequence[str] | None = None,
    *,
    batch_size: int = 256,
    normalize: bool = True,
    bucket: bool = True,
) -> tuple[list[str], np.ndarray]:
    """``values`` (default: the column's distinct items) and their float32 embeddings, row by row.

    Callers that go in batches (resumable export, index build) pass each batch as ``values``;
    ``bucket=False`` runs the batches in input order (for hooks that capture them).
    """
    if values is None:
        values, _ = distinct_items(manifest, modality)
    inputs = item_inputs(manifest, modality, values)
    vectors = model.encode(
        inputs, modality, batch_size=batch_size, normalize=normalize, bucket=bucket
    )
    return list(values), np.asarray(vectors, dtype=np.float32)


def embed_batch(
    model: JointModel,
    source: ItemSource,
    modality: str,
    items: Sequence[Item],
    *,
    batch_size: int = 256,
    normalize: bool = True,
) -> np.ndarray:
    """float32 embeddings of a batch of a source's items (a manifest's go through embed_items)."""
    if source.manifest is not None:
        values = [item.value for item in items]
        return embed_items(
            model, source.manifest, modality, values, batch_size=batch_size, normalize=normalize
        )[1]
    inputs = [item.input(modality) for item in items]
    vectors = model.encode(inputs, modality, batch_size=batch_size, normalize=normalize)
    return np.asarray(vectors, dtype=np.float32)


def per_row(
    manifest: Manifest, modality: str, values: Sequence[str], vectors: np.ndarray
) -> np.ndarray:
    """Vectors of distinct ``values`` spread back over the manifest's rows (one per row)."""
    where = {value: i for i, value in enumerate(values)}
    return vectors[[where[row[modality]] for row in manifest.rows]]
