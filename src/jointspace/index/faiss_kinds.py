"""The FAISS structures behind ``hnsw`` and ``ivfpq``: build, tune and search parameters.

Small stand-ins with the names and signatures of ``jointspace.index.tuning`` (H5), which
replaces them: FAISS ids are row numbers of the vector log.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from jointspace.index import scan
from jointspace.index.errors import IndexUriError

BLOCK = 65536  # rows added to a structure at a time (the log is memory-mapped)
HNSW_EF = (16, 32, 64, 128, 256, 512, 1024)
FLAT_MAX = 100_000  # choose_kind: below this many rows exact search is fast enough


def new_hnsw(dim: int, M: int = 32) -> faiss.Index:
    """An empty HNSW graph (inner product) taking explicit ids."""
    return faiss.IndexIDMap(faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT))


def build_ivfpq(
    vectors: np.ndarray, *, nlist: int | None = None, m: int | None = None, seed: int = 0
) -> faiss.IndexIVFPQ:
    """IVF-PQ trained on a sample of all of ``vectors``, holding every row (id = row)."""
    n, dim = vectors.shape
    nlist = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))
    m = m or _largest_divisor_at_most(dim, max(1, dim // 2))
    if dim % m:
        raise IndexUriError(f"ivfpq m={m} must divide the dimension {dim}")
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, max(256 * nlist, 10_000)), replace=False))
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    # Small corpora train on fewer points than FAISS's rule of thumb: accepted, so stay quiet.
    index.cp.min_points_per_centroid = index.pq.cp.min_points_per_centroid = 1
    index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    for start in range(0, n, BLOCK):
        block = np.ascontiguousarray(vectors[start : start + BLOCK], dtype=np.float32)
        index.add_with_ids(block, np.arange(start, start + len(block), dtype=np.int64))
    index.nprobe = min(nlist, 16)
    return index


def tune(
    structure: faiss.Index,
    vectors: np.ndarray,
    *,
    k: int = 10,
    target: float = 0.95,
    sample: int = 200,
    seed: int = 0,
) -> dict:
    """The smallest efSearch / nprobe reaching ``target`` recall@k on a sample of the corpus."""
    n = structure.ntotal
    vectors = vectors[:n]
    rng = np.random.default_rng(seed)
    rows = rng.choice(n, size=min(n, sample), replace=False)
    # Held out: a row of the index would find itself. A point 30 % of the way to another row
    # is new to the structure yet lies where the corpus does.
    other = np.asarray(vectors[rng.choice(n, size=len(rows))], dtype=np.float32)
    queries = np.asarray(vectors[np.sort(rows)], dtype=np.float32)
    queries = np.ascontiguousarray(queries + 0.3 * (other - queries))
    k = min(k, n)
    truth = scan.top_k(vectors, queries, k)[1].tolist()
    ivf = _ivf(structure)
    name = "nprobe" if ivf is not None else "ef_search"
    choices = _powers(ivf.nlist) if ivf is not None else HNSW_EF
    recall = 0.0
    for value in choices:
        params = search_params(structure, ef_search=value, nprobe=value)  # the one it takes
        found = structure.search(queries, k, params=params)[1].tolist()
        hits = [len(set(f) & set(t)) for f, t in zip(found, truth, strict=True)]
        recall = float(np.sum(hits) / (k * len(truth)))
        if recall >= target:
            break
    return {name: int(value), "recall_at_10": round(recall, 4), "recall_queries": len(rows)}


def search_params(
    structure: faiss.Index,
    *,
    ef_search: int | None = None,
    nprobe: int | None = None,
    selector: faiss.IDSelector | None = None,
) -> faiss.SearchParameters:
    """Per-query parameters for ``structure`` (its own defaults where None)."""
    # faiss's stubs omit the keyword arguments its wrappers take (they keep ``sel`` alive).
    if (ivf := _ivf(structure)) is not None:
        return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe or ivf.nprobe)  # type: ignore[call-arg]
    outer: Any = structure
    hnsw: Any = faiss.downcast_index(outer.index if hasattr(outer, "id_map") else outer)
    ef = ef_search or hnsw.hnsw.efSearch
    return faiss.SearchParametersHNSW(sel=selector, efSearch=ef)  # type: ignore[attr-defined]


def search_tuned(
    structure: faiss.Index,
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    ef_search: int | None = None,
    nprobe: int | None = None,
    shortlist: int | None = None,
    selector: faiss.IDSelector | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Search ``structure`` the way ``tune`` measured it: (scores, ids = rows) [q, k]."""
    params = search_params(structure, ef_search=ef_search, nprobe=nprobe, selector=selector)
    return structure.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)


def choose_kind(n: int, dim: int, memory_budget_bytes: int | None = None) -> tuple[str, str]:
    """flat, hnsw or ivfpq for ``n`` vectors of ``dim``, and why."""
    if n < FLAT_MAX:
        return "flat", f"{n} rows: an exact scan is fast enough"
    needed = n * dim * 4 * 1.5  # vectors plus the graph's links, roughly
    if memory_budget_bytes is not None and needed > memory_budget_bytes:
        return "ivfpq", f"HNSW needs ~{needed / 2**30:.1f} GiB, over the memory budget"
    return "hnsw", f"{n} rows fit in memory as an HNSW graph"


def _ivf(structure: faiss.Index):
    return faiss.downcast_index(structure) if isinstance(structure, faiss.IndexIVF) else None


def _powers(limit: int) -> list[int]:
    values = [1 << i for i in range(int(np.log2(max(limit, 1))) + 1)]
    return values if values[-1] == limit else [*values, limit]


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, limit + 1) if n % d == 0)
