"""Scan storages: fp32 rows as they are, fp16, int8 scalar-quantised per dimension."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np

from jointspace.errors import InputError
from jointspace.index.topk import (
    PAD_ROW,
    Scorer,
    block_rows,
    check_codes,
    check_k,
    check_queries,
    check_rows,
    scan,
)


def fp32_scorer(queries: np.ndarray) -> Scorer:
    """BLAS on float32 rows: a matrix-vector product for one query, a matmul for a batch."""
    if len(queries) == 1:
        vector = queries[0]

        def one(block: np.ndarray, out: np.ndarray) -> None:
            np.dot(block, vector, out=out.reshape(-1))

        return one

    transposed = np.ascontiguousarray(queries.T)

    def batch(block: np.ndarray, out: np.ndarray) -> None:
        np.matmul(block, transposed, out=out)

    return batch


def widening_scorer(queries: np.ndarray) -> Scorer:
    """Narrow codes widened to float32 one block at a time (cache-sized), then BLAS."""
    inner = fp32_scorer(queries)
    spare = np.empty(0, np.float32)

    def score(block: np.ndarray, out: np.ndarray) -> None:
        nonlocal spare
        if spare.size < block.size:
            spare = np.empty(block.size, np.float32)
        wide = spare[: block.size].reshape(block.shape)
        np.copyto(wide, block, casting="unsafe")
        inner(wide, out)

    return score


class Storage:
    """How scanned rows are held; search() answers like scan.top_k over the stored codes."""

    name: ClassVar[str]
    dtype: ClassVar[np.dtype]
    # With `exact` rows given, this many × k approximate hits are re-scored in float32.
    shortlist: int = 4

    def fit(self, sample: np.ndarray) -> Storage:
        """Learn what encoding needs from a sample of the vectors (fp32/fp16: nothing)."""
        return self

    def encode(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Storage:
        """The storage to_dict() described (e.g. read back from index.json)."""
        if not isinstance(d, dict) or d.get("name") not in STORAGES:
            raise InputError(f"unknown scan storage {d!r}; use one of {', '.join(STORAGES)}")
        return STORAGES[d["name"]]._from_dict(d)

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Storage:
        return cls()

    def _scorer(self, queries: np.ndarray) -> Scorer:
        return fp32_scorer(queries)

    def _block(self, queries: int, dim: int) -> int | None:
        """Rows per block (None: scan's default); widened codes are a copy, so copy-sized.
        Not smaller: idle, a cache-sized block (4 MB) scanned int8 2x faster for one query, but
        on the busy 2-core machine its many BLAS calls made one query 10x slower than fp32."""
        return block_rows(queries, dim)

    def _offset(self, queries: np.ndarray) -> np.ndarray | float:
        """Added to every approximate score of a query (the part codes do not carry)."""
        return 0.0

    def search(
        self,
        codes: np.ndarray,
        queries: np.ndarray,
        k: int,
        *,
        rows: np.ndarray | None = None,
        exact: np.ndarray | None = None,
        block: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows of ``codes`` (scores [q,k] float32 descending, rows [q,k] int64, -1 padding).

        With ``exact`` (the float32 rows the codes came from) a shortlist of ``shortlist`` × k is
        re-scored in float32 and the scores returned are exact.
        """
        codes = check_codes(codes, self.dtype, "codes")
        queries = check_queries(queries, codes.shape[1])
        k = check_k(k)
        rows = check_rows(rows, len(codes))
        rescore = exact is not None and self.name != "fp32"
        if rescore:
            exact = check_codes(exact, np.dtype(np.float32), "exact")
            if exact.shape != codes.shape:
                raise InputError(f"exact rows {exact.shape} do not match the codes {codes.shape}")
        depth = max(k * self.shortlist, k + 32) if rescore else k
        with warnings.catch_warnings():
            # torch warns on read-only arrays (a memory map opened for reading); nothing writes.
            warnings.simplefilter("ignore", UserWarning)
            step = block or self._block(len(queries), codes.shape[1])
            scorer = self._scorer(queries)
            scores, found = scan(codes, scorer, len(queries), depth, rows=rows, block=step)
        if rescore:
            assert exact is not None
            return rescored(exact, queries, found, k)
        offset = np.asarray(self._offset(queries), np.float32).reshape(-1, 1)
        return np.where(found >= 0, scores + offset, scores).astype(np.float32), found


def rescored(
    exact: np.ndarray, queries: np.ndarray, found: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The top k of each query's shortlist ``found`` by exact float32 score, ties to lower rows."""
    q, depth = found.shape
    valid = found >= 0
    vectors = exact[np.where(valid, found, 0).ravel()].reshape(q, depth, -1)
    scores = np.einsum("qkd,qd->qk", vectors, queries, dtype=np.float32)
    scores = np.where(valid, scores, np.float32(-np.inf))
    keys = np.where(valid, found, PAD_ROW)
    order = np.lexsort((keys, -scores), axis=1)[:, :k] if q else np.empty((0, k), np.int64)
    best_scores = np.take_along_axis(scores, order, axis=1)
    best_rows = np.take_along_axis(found, order, axis=1)
    if depth < k:  # fewer rows than k: pad
        pad = k - depth
        best_scores = np.pad(best_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        best_rows = np.pad(best_rows, ((0, 0), (0, pad)), constant_values=-1)
    return best_scores.astype(np.float32), best_rows


class Float32(Storage):
    """The float32 rows themselves: exact."""

    name = "fp32"
    dtype = np.dtype(np.float32)

    def _block(self, queries: int, dim: int) -> int | None:
        return None

    def encode(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=np.float32)


class Float16(Storage):
    """Half the bytes; scores carry fp16 rounding (~1e-4 on unit vectors) unless re-scored."""

    name = "fp16"
    dtype = np.dtype(np.float16)

    def encode(self, x: np.ndarray) -> np.ndarray:
        limit = np.finfo(np.float16).max
        return np.clip(np.asarray(x, np.float32), -limit, limit).astype(np.float16)

    def _scorer(self, queries: np.ndarray) -> Scorer:
        if len(queries) == 1:
            return torch_half_scorer(queries[0])
        return widening_scorer(queries)

    def _block(self, queries: int, dim: int) -> int | None:
        return None if queries == 1 else super()._block(queries, dim)  # torch reads fp16 as is


def torch_half_scorer(vector: np.ndarray) -> Scorer:
    """One query on fp16 rows: torch's half matrix-vector product reads the fp16 rows directly
    (measured ~3× numpy's widening + sgemv here; benchmarks/search.py)."""
    import torch

    query = torch.from_numpy(vector).half()

    def score(block: np.ndarray, out: np.ndarray) -> None:
        out[:, 0] = torch.mv(torch.from_numpy(block), query).numpy()

    return score


class Int8(Storage):
    """A quarter of the bytes: per dimension, x ≈ low + step·(code + 128), fitted on a sample."""

    name = "int8"
    dtype = np.dtype(np.int8)

    def __init__(self, low: np.ndarray | None = None, step: np.ndarray | None = None):
        self.low = None if low is None else np.asarray(low, np.float32)
        self.step = None if step is None else np.asarray(step, np.float32)

    def fit(self, sample: np.ndarray) -> Storage:
        sample = np.asarray(sample, np.float32)
        if sample.ndim != 2 or len(sample) == 0 or not np.isfinite(sample).all():
            raise InputError(f"int8 storage needs a finite sample [n>0, dim], not {sample.shape}")
        self.low = sample.min(axis=0)
        span = sample.max(axis=0) - self.low
        self.step = np.where(span > 0, span / 255, 1).astype(np.float32)
        return self

    def _fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self.low is None or self.step is None:
            raise InputError("int8 storage is not fitted: call fit(sample) first")
        return self.low, self.step

    def encode(self, x: np.ndarray) -> np.ndarray:
        low, step = self._fitted()
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != len(low):
            raise InputError(f"int8 storage encodes [n, {len(low)}] vectors, not {x.shape}")
        codes = np.rint((x - low) / step) - 128
        return np.clip(codes, -128, 127).astype(np.int8)

    def to_dict(self) -> dict[str, Any]:
        low, step = self._fitted()
        return {"name": self.name, "low": low.tolist(), "step": step.tolist()}

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Storage:
        try:
            low, step = np.asarray(d["low"], np.float32), np.asarray(d["step"], np.float32)
        except (KeyError, TypeError, ValueError):
            raise InputError("int8 storage needs numeric 'low' and 'step' lists") from None
        if low.ndim != 1 or low.shape != step.shape or not (step > 0).all():
            raise InputError("int8 storage 'low' and 'step' must be equal-length, step > 0")
        return cls(low, step)

    def _scorer(self, queries: np.ndarray) -> Scorer:
        # q·x = q·(low + 128·step) + (q∘step)·code: rank by the second term, add the first after.
        _, step = self._fitted()
        return widening_scorer(np.ascontiguousarray(queries * step, dtype=np.float32))

    def _offset(self, queries: np.ndarray) -> np.ndarray:
        low, step = self._fitted()
        return queries @ (low + 128 * step)


STORAGES: dict[str, type[Storage]] = {"fp32": Float32, "fp16": Float16, "int8": Int8}
