"""Retrieval metrics as pure functions of a score matrix and a relevance matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

QUERY_CHUNK = 1024  # bounds memory at QUERY_CHUNK × gallery size for large evaluations


def ranking_stats(scores: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query: 1-based rank of the first relevant item, and average precision (ties count
    against the model)."""
    if scores.shape != relevant.shape or scores.ndim != 2:
        raise ValueError(
            f"scores {scores.shape} and relevant {relevant.shape} must be one 2-D shape"
        )
    if not relevant.any(axis=1).all():
        raise ValueError("every query needs at least one relevant gallery item")
    first_ranks, aps = [], []
    for start in range(0, len(scores), QUERY_CHUNK):
        s, r = scores[start : start + QUERY_CHUNK], relevant[start : start + QUERY_CHUNK]
        # Ties rank irrelevant items first: constant scores must not look like a perfect model.
        order = np.lexsort((r, -s), axis=1)
        hits = np.take_along_axis(r, order, axis=1)
        first_ranks.append(hits.argmax(axis=1) + 1)
        precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
        aps.append((precision * hits).sum(axis=1) / hits.sum(axis=1))
    return np.concatenate(first_ranks), np.concatenate(aps)


def retrieval_metrics(
    scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@K (a relevant item in the top K), mAP and median rank of the first relevant item."""
    first_ranks, aps = ranking_stats(scores, relevant)
    metrics = {f"R@{k}": float((first_ranks <= k).mean()) for k in ks}
    metrics["mAP"] = float(aps.mean())
    metrics["median_rank"] = float(np.median(first_ranks))
    return metrics


def chance_metrics(
    relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10), draws: int = 20, seed: int = 0
) -> dict[str, float]:
    """The same metrics for random scores, averaged over ``draws`` seeded draws."""
    rng = np.random.default_rng(seed)
    runs = [retrieval_metrics(rng.random(relevant.shape), relevant, ks) for _ in range(draws)]
    return {name: float(np.mean([run[name] for run in runs])) for name in runs[0]}
