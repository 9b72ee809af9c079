"""Embed a manifest's items and search them by brute force (a real index comes later)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.table import Table

from jointspace.atomic import atomic_path
from jointspace.data import Manifest
from jointspace.evaluate.retrieval import embed_values
from jointspace.models.joint import JointModel


@dataclass
class Hit:
    """One search result: the manifest value plus what the manifest knows about it."""

    rank: int
    score: float
    value: str
    id: str
    label: str
    split: str = ""


def unique_items(manifest: Manifest, modality: str) -> tuple[list[str], list[dict[str, str]]]:
    """Distinct values of a modality column and the first row that holds each."""
    first: dict[str, dict[str, str]] = {}
    for row in manifest.rows:
        first.setdefault(row[modality], row)
    return list(first), list(first.values())


def embed_manifest(model: JointModel, manifest: Manifest, modality: str) -> pa.Table:
    """A table of unique values with ``id``, ``label`` and a float32 ``embedding`` list column."""
    values, rows = unique_items(manifest, modality)
    vectors = embed_values(model, manifest, modality, values).astype(np.float32)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])
    return pa.table(
        {
            "id": [r["id"] for r in rows],
            modality: values,
            "label": [r.get("label", "") for r in rows],
            "embedding": embedding,
        }
    )


def write_embeddings(table: pa.Table, path: str | Path) -> None:
    """Write Parquet atomically: an interrupted run leaves no half file."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def search_manifest(
    model: JointModel, manifest: Manifest, queries: list[str], target: str, k: int = 5
) -> list[list[Hit]]:
    """Top-``k`` items of ``target`` for each text query, by cosine similarity."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    values, rows = unique_items(manifest, target)
    gallery = embed_values(model, manifest, target, values)
    scores = model.encode(queries, "text") @ gallery.T
    results = []
    for row_scores in scores:
        top = np.argsort(-row_scores, kind="stable")[:k]
        results.append(
            [
                Hit(
                    rank,
                    float(row_scores[i]),
                    values[i],
                    rows[i]["id"],
                    rows[i].get("label", ""),
                    rows[i].get("split", ""),
                )
                for rank, i in enumerate(top, start=1)
            ]
        )
    return results


def results_table(query: str, hits: list[Hit]) -> Table:
    table = Table(title=f"query: {query!r}")
    for name in ("rank", "score", "item", "label"):
        table.add_column(name, justify="right" if name in ("rank", "score") else "left")
    for hit in hits:
        table.add_row(str(hit.rank), f"{hit.score:.3f}", hit.value, hit.label)
    return table
