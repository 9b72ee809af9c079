"""Exact chance levels: what a uniformly random ranking scores in expectation, per query.

A query with ``r`` relevant items among ``n`` candidates, ranked by a uniformly random
permutation: its first relevant rank exceeds ``K`` with probability C(n−r, K) / C(n, K).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from jointspace.evaluate.errors import EvaluationError

# Survival below this is dropped: it changes no chance figure by more than 1e-20.
NEGLIGIBLE_LOG = math.log(1e-20)


def first_rank_survival(n: int, r: int, length: int) -> np.ndarray:
    """P(first relevant rank > K) for K = 0 … length − 1: C(n−r, K) / C(n, K) as a running
    product, exact to float rounding and free of huge binomials."""
    k = np.arange(max(length - 1, 0), dtype=np.float64)
    ratios = np.clip((n - r - k) / (n - k), 0.0, None)
    return np.concatenate([[1.0], np.cumprod(ratios)])


def expected_average_precision(n: int, r: np.ndarray) -> np.ndarray:
    """E[AP] of a random ranking: (H_n + (r−1)(n − H_n)/(n−1)) / n, H_n the harmonic number.

    From E[AP] = (1/r) Σ_j E[rel_j (1 + hits before j)] / j with E[rel_j] = r/n and
    E[hits before j | rel_j] = (j−1)(r−1)/(n−1).
    """
    r = np.asarray(r, dtype=np.float64)
    harmonic = float(np.sum(1.0 / np.arange(1, n + 1, dtype=np.float64)))
    spread = (r - 1) * (n - harmonic) / (n - 1) if n > 1 else np.zeros_like(r)
    return (harmonic + spread) / n


def pooled_survival(n: int, counts: np.ndarray, length: int) -> np.ndarray:
    """Mean over queries of P(first relevant rank > K), K = 0 … length − 1.

    Queries sharing a relevant count share one curve, so the cost is distinct counts × length,
    and each curve stops where it falls below 1e-20 (it is bounded by exp(−rK/n))."""
    values, multiplicity = np.unique(counts, return_counts=True)
    pooled = np.zeros(length)
    for r, m in zip(values.tolist(), multiplicity.tolist(), strict=True):
        cut = min(length, n - r + 1, math.ceil(-NEGLIGIBLE_LOG * n / r) + 1)
        pooled[:cut] += m * first_rank_survival(n, r, cut)
    return pooled / len(counts)


def chance_levels(relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Expected Recall@K and mAP of a uniformly random ranking, and its median rank.

    Rows are queries; rows without a relevant item must be removed first. The median rank is
    the median of the first relevant rank pooled over queries (what the median rank of random
    rankings tends to), with the midpoint when the distribution splits exactly in half."""
    relevant = np.asarray(relevant, dtype=bool)
    counts = relevant.sum(axis=1)
    n = relevant.shape[1]
    if len(counts) == 0 or (counts == 0).any():
        raise EvaluationError("chance levels need at least one query, each with a relevant item")
    # The fewest relevant items decay slowest: their median bounds the pooled median.
    slowest = first_rank_survival(n, int(counts.min()), n + 1)
    length = max(int(np.argmax(slowest <= 0.5)) + 2, max(ks, default=1) + 1)
    survival = pooled_survival(n, counts, min(length, n + 1))
    out = {}
    for k in ks:
        out[f"R@{k}"] = 1.0 - float(survival[k]) if k < len(survival) else 1.0
    out["mAP"] = float(expected_average_precision(n, counts).mean())
    out["median_rank"] = _median(survival)
    return out


def _median(survival: np.ndarray) -> float:
    # survival[K] = P(rank > K); the median is the first K with P(rank ≤ K) ≥ 1/2.
    k = int(np.argmax(survival <= 0.5 + 1e-12))
    if abs(survival[k] - 0.5) <= 1e-12:
        return k + 0.5  # P(rank ≤ K) is exactly 1/2: halfway to the next rank, as np.median
    return float(k)
