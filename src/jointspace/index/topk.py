"""The blocked scan behind index.scan: block scores, a running top-k, never the q×N matrix."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from jointspace.errors import InputError
from jointspace.index.errors import IndexMismatchError

# Sorts after every real row, so a real row wins any tie with padding; reported as -1.
PAD_ROW = np.iinfo(np.int64).max
# Rows per block are bounded by the bytes a block copies (a gathered subset) and by the scores it
# writes. A scan over consecutive rows copies nothing, so it takes the largest blocks the score
# bound allows: BLAS threads meet at the end of every call, and on a busy machine many small
# calls cost more than the call itself (measured: 16 MB blocks 2-4x slower than 200 MB ones
# for one query under load, equal when idle).
BLOCK_BYTES = 16 << 20
SCORE_BYTES = 8 << 20
MAX_ROWS = 1 << 17
# More candidates than this many per query×k in one block and the block pre-selects its own
# top-k first (the first block, or rows arriving in ascending score order).
PRESELECT = 4

# score(block, out): fills out [len(block), q] with the block's rows' scores against the queries
# (rows first: BLAS splits the long side across threads, measured ~1.5x faster than [q, B]).
Scorer = Callable[[np.ndarray, np.ndarray], None]


class RunningTopK:
    """The k best (score, row) per query seen so far; ties go to the lower row."""

    def __init__(self, queries: int, k: int):
        self.k = k
        self.scores = np.full((queries, k), -np.inf, np.float32)
        self.rows = np.full((queries, k), PAD_ROW, np.int64)
        # The k-th best score per query: a later (higher) row must beat it, not tie it.
        self.floor = np.full(queries, -np.inf, np.float32)
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.pending_count = 0

    def offer(self, scores: np.ndarray, rows: np.ndarray | int) -> None:
        """Scores [B, q] of rows [B] (or rows offset..offset+B), after every row offered before."""
        height, q = scores.shape
        mask = scores > self.floor
        count = np.count_nonzero(mask)
        if not count:
            return
        if height > self.k and count > PRESELECT * q * self.k:
            # NaN would sort as the largest and poison the k-th value: it never wins.
            clean = np.where(np.isnan(scores), np.float32(-np.inf), scores)
            part = np.argpartition(clean, height - self.k, axis=0)[height - self.k :]
            kth = np.take_along_axis(clean, part, axis=0).min(axis=0)
            mask &= clean >= kth  # >=: every row tying the k-th stays a candidate
        flat = np.flatnonzero(mask)  # 1-D: np.nonzero on 2-D unravels, several times slower
        col, qi = np.divmod(flat, q)
        # Candidates wait in a pool and merge in bulk (a merge costs more than a few blocks'
        # candidates); the floor only rises at a merge, so a stale one admits a few more.
        found = col + rows if isinstance(rows, int) else rows[col]
        self.pending.append((qi, scores[col, qi], found))
        self.pending_count += qi.size
        if self.pending_count >= q * self.k:
            self._merge()

    def _merge(self) -> None:
        if not self.pending:
            return
        qi, scores, rows = (np.concatenate(part) for part in zip(*self.pending, strict=True))
        self.pending, self.pending_count = [], 0
        order = np.argsort(qi, kind="stable")
        qi, scores, rows = qi[order], scores[order], rows[order]
        touched = qi[np.concatenate(([True], qi[1:] != qi[:-1]))]
        k, t = self.k, touched.size
        local = np.searchsorted(touched, qi)
        group = np.concatenate([np.repeat(np.arange(t), k), local])
        all_scores = np.concatenate([self.scores[touched].ravel(), scores])
        all_rows = np.concatenate([self.rows[touched].ravel(), rows])
        order = np.lexsort((all_rows, -all_scores, group))
        ranked = group[order]
        rank = np.arange(ranked.size) - np.searchsorted(ranked, np.arange(t))[ranked]
        keep = order[rank < k]  # every group holds >= k entries, so exactly k each
        self.scores[touched] = all_scores[keep].reshape(t, k)
        self.rows[touched] = all_rows[keep].reshape(t, k)
        self.floor[touched] = self.scores[touched, -1]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self._merge()
        rows = np.where(self.rows == PAD_ROW, -1, self.rows)
        return self.scores.copy(), rows


def block_rows(queries: int, dim: int, *, copied: bool = True) -> int:
    """Rows per block: SCORE_BYTES of scores and, when the block is copied, BLOCK_BYTES of it."""
    rows = SCORE_BYTES // (4 * max(1, queries))
    if copied:
        rows = min(rows, BLOCK_BYTES // (4 * max(1, dim)))
    return int(min(max(rows, 256), MAX_ROWS))


def scan(
    codes: np.ndarray,
    score: Scorer,
    queries: int,
    k: int,
    *,
    rows: np.ndarray | None = None,
    block: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows of ``codes`` (or of its sorted ``rows``) by ``score``, block by block."""
    top = RunningTopK(queries, k)
    if queries == 0:
        return top.result()
    step = block or block_rows(queries, codes.shape[1], copied=rows is not None)
    # A gathered subset may read a span of up to 2 blocks (dense subsets are not copied).
    buffer = np.empty(queries * 2 * step, np.float32)
    total = len(codes) if rows is None else len(rows)
    for start in range(0, total, step):
        if rows is None:
            stop = min(start + step, total)
            out = buffer[: queries * (stop - start)].reshape(stop - start, queries)
            score(codes[start:stop], out)
            top.offer(out, start)
            continue
        chosen = rows[start : start + step]
        low, high = int(chosen[0]), int(chosen[-1]) + 1
        if 2 * len(chosen) >= high - low:
            # Dense: scoring the whole span is cheaper than copying the chosen rows out.
            out = buffer[: queries * (high - low)].reshape(high - low, queries)
            score(codes[low:high], out)
            top.offer(out[chosen - low], chosen)
        else:
            out = buffer[: queries * len(chosen)].reshape(len(chosen), queries)
            score(codes[chosen], out)
            top.offer(out, chosen)
    return top.result()


def check_codes(codes: object, dtype: np.dtype, what: str = "base") -> np.ndarray:
    """A 2-D array (ndarray or np.memmap, never copied) of ``dtype``."""
    if not isinstance(codes, np.ndarray) or codes.ndim != 2:
        shape = getattr(codes, "shape", type(codes).__name__)
        raise InputError(f"{what} must be a 2-D array [N, dim], not {shape}")
    if codes.dtype != dtype:
        # Converting would read (a memory-mapped index: load) all of it.
        raise InputError(f"{what} must hold {np.dtype(dtype).name}, not {codes.dtype.name}")
    return codes


def check_queries(queries: object, dim: int) -> np.ndarray:
    """Queries [q, dim] (or one [dim]) as C-contiguous finite float32."""
    array = np.asarray(queries)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise InputError(f"queries must be numbers shaped [q, {dim}], not {array.shape}")
    if array.shape[1] != dim:
        raise IndexMismatchError(f"queries have dimension {array.shape[1]}, the index {dim}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise InputError("queries contain NaN or infinity")
    return array


def check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"k must be a whole number >= 1, not {k!r}")
    return int(k)


def check_rows(rows: object, n: int) -> np.ndarray | None:
    """An ascending, duplicate-free int64 subset of range(n), or None for all rows."""
    if rows is None:
        return None
    array = np.asarray(rows)
    if array.size == 0:
        return np.empty(0, np.int64)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise InputError(
            f"rows must be a 1-D array of row numbers, not {array.dtype} {array.shape}"
        )
    array = array.astype(np.int64, copy=False)
    if np.any(array[1:] <= array[:-1]):
        raise InputError("rows must be sorted ascending without duplicates")
    if array[0] < 0 or array[-1] >= n:
        raise InputError(f"rows must lie in [0, {n}); got {array[0]}..{array[-1]}")
    return array
