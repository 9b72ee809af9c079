"""Retrieval metrics as pure functions of a score matrix and a relevance matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jointspace.evaluate.chance import chance_levels
from jointspace.evaluate.errors import EvaluationError

QUERY_CHUNK = 1024  # bounds memory at QUERY_CHUNK × gallery size for large evaluations


def ranking_stats(scores: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query: 1-based rank of the first relevant item, and average precision (ties count
    against the model)."""
    if scores.shape != relevant.shape or scores.ndim != 2:
        raise EvaluationError(
            f"scores {scores.shape} and relevant {relevant.shape} must be one 2-D shape"
        )
    if not relevant.any(axis=1).all():
        raise EvaluationError("every query needs at least one relevant gallery item")
    first_ranks, aps = [], []
    for start in range(0, len(scores), QUERY_CHUNK):
        s, r = scores[start : start + QUERY_CHUNK], relevant[start : start + QUERY_CHUNK]
        if not np.isfinite(s).all():
            # NaN sorts last and would silently rank every relevant item as a miss
            bad = int((~np.isfinite(s)).any(axis=1).sum())
            raise EvaluationError(
                f"{bad} queries (of rows {start}-{start + len(s) - 1}) have NaN or infinite "
                "scores: the embeddings are not finite (damaged or diverged weights?)"
            )
        # Ties rank irrelevant items first: constant scores must not look like a perfect model.
        order = np.lexsort((r, -s), axis=1)
        hits = np.take_along_axis(r, order, axis=1)
        first_ranks.append(hits.argmax(axis=1) + 1)
        precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
        aps.append((precision * hits).sum(axis=1) / hits.sum(axis=1))
    return np.concatenate(first_ranks), np.concatenate(aps)


def scored_queries(relevant: np.ndarray) -> np.ndarray:
    """Which queries can be scored (they have a relevant item); an error when none can."""
    relevant = np.asarray(relevant, dtype=bool)
    if relevant.ndim != 2:
        raise EvaluationError(f"relevance must be queries × gallery (2-D), got {relevant.shape}")
    if 0 in relevant.shape:
        queries, items = relevant.shape
        raise EvaluationError(f"nothing to evaluate: {queries} queries, {items} gallery items")
    has = relevant.any(axis=1)
    if not has.any():
        raise EvaluationError(f"none of the {len(has)} queries has a relevant gallery item")
    return has


def retrieval_metrics(
    scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@K (a relevant item in the top K), mAP and median rank of the first relevant item,
    over the queries that have a relevant item (the others cannot be scored)."""
    has = scored_queries(relevant)
    first_ranks, aps = ranking_stats(np.asarray(scores)[has], np.asarray(relevant)[has])
    metrics = {f"R@{k}": float((first_ranks <= k).mean()) for k in ks}
    metrics["mAP"] = float(aps.mean())
    metrics["median_rank"] = float(np.median(first_ranks))
    return metrics


def chance_metrics(relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """The same metrics' exact expected values under a uniformly random ranking."""
    has = scored_queries(relevant)
    return chance_levels(np.asarray(relevant)[has], ks)
