"""Brute-force text search over a manifest's items (no index needed: the demo, `search`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jointspace.config import ConfigError
from jointspace.data import Manifest, ManifestError
from jointspace.data.complete import rows_having
from jointspace.models.embedding import distinct_items, embed_items
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


def search_manifest(
    model: JointModel, manifest: Manifest, queries: list[str], target: str, k: int = 5
) -> list[list[Hit]]:
    """Top-``k`` items of ``target`` for each text query, by cosine similarity (rows without
    ``target``, an empty cell, hold nothing to find)."""
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    manifest = rows_having(manifest, [target])[0]
    if not manifest.rows:
        raise ManifestError(f"{manifest.path}: no row has {target} to search")
    values, rows = distinct_items(manifest, target)
    _, gallery = embed_items(model, manifest, target, values)
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
