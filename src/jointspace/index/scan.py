"""Exact search over float32 rows in memory or memory-mapped, and the quantised scan storages.

top_k scans in blocks (a matrix-vector product per block for one query, a matmul per block for a
batch) and keeps a running top-k, so memory is O(q × block) whatever N is, and a memory-mapped
index larger than RAM is read block by block. Ties go to the lower row.
"""

from __future__ import annotations

import numpy as np

from jointspace.errors import UnknownNameError
from jointspace.index.quantize import STORAGES, Storage, fp32_scorer
from jointspace.index.topk import check_codes, check_k, check_queries, check_rows, scan

__all__ = ["Storage", "storage", "top_k"]


def top_k(
    base: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    rows: np.ndarray | None = None,
    block: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k rows of ``base`` [N, d] float32 with the largest inner product with each query.

    ``queries``: [q, d] (or one [d]); ``rows``: an ascending subset of row numbers to search
    instead of all; ``block``: rows per block (default: sized to the cache). Returns scores
    [q, k] float32 descending and rows [q, k] int64, padded with -inf / -1 past the rows there are.
    """
    base = check_codes(base, np.dtype(np.float32))
    queries = check_queries(queries, base.shape[1])
    k = check_k(k)
    rows = check_rows(rows, len(base))
    return scan(base, fp32_scorer(queries), len(queries), k, rows=rows, block=block)


def storage(name: str) -> Storage:
    """A new scan storage: ``fp32`` (exact), ``fp16`` or ``int8`` (fit it on a sample first)."""
    if name not in STORAGES:
        raise UnknownNameError(f"unknown scan storage {name!r}; use one of {', '.join(STORAGES)}")
    return STORAGES[name]()
