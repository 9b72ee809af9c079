"""Exact inner-product top-k over a (memory-mapped) matrix: blocked, with a running top-k merge.

Minimal stand-in with the agreed signature; the fast version (H4) replaces this file.
"""

from __future__ import annotations

import numpy as np

BLOCK = 65536  # rows per block: the q x BLOCK score matrix stays small


def top_k(
    base: np.ndarray, queries: np.ndarray, k: int, *, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Scores (descending) and row positions of the ``k`` best rows of ``base`` per query."""
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    q = len(queries)
    best_s = np.full((q, k), -np.inf, dtype=np.float32)
    best_p = np.full((q, k), -1, dtype=np.int64)
    total = len(base) if rows is None else len(rows)
    for start in range(0, total, BLOCK):
        if rows is None:
            positions = np.arange(start, min(start + BLOCK, total), dtype=np.int64)
            block = np.asarray(base[start : start + BLOCK], dtype=np.float32)
        else:
            positions = np.asarray(rows[start : start + BLOCK], dtype=np.int64)
            block = np.asarray(base[positions], dtype=np.float32)
        scores = queries @ block.T
        merged_s = np.concatenate([best_s, scores], axis=1)
        merged_p = np.concatenate([best_p, np.broadcast_to(positions, scores.shape)], axis=1)
        if merged_s.shape[1] > k:
            keep = np.argpartition(-merged_s, k - 1, axis=1)[:, :k]
            merged_s = np.take_along_axis(merged_s, keep, axis=1)
            merged_p = np.take_along_axis(merged_p, keep, axis=1)
        order = np.lexsort((merged_p, -merged_s), axis=1)  # ties: the lower row first
        best_s = np.take_along_axis(merged_s, order, axis=1)
        best_p = np.take_along_axis(merged_p, order, axis=1)
    best_p[~np.isfinite(best_s)] = -1
    return best_s, best_p
