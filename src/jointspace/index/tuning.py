"""Approximate structures that keep their promise: IVF-PQ trained on the whole corpus, HNSW, and
search settings raised until recall@k on the corpus's own vectors reaches a target.

Pure functions over faiss objects and the fp32 vectors whose row numbers are the faiss ids.
"""

from __future__ import annotations

import math
from typing import Any

import faiss
import numpy as np

from jointspace.errors import InputError
from jointspace.index.errors import IndexUriError
from jointspace.index.scan import top_k

HNSW_M = 32
EF_LADDER = tuple(16 * 2**i for i in range(9))  # 16 … 4096: past that, exact scan is cheaper
SHORTLIST_MAX = 256  # IVF-PQ re-scores at most 256·(k+1) candidates with the exact vectors
TRAIN_PER_LIST = 40  # k-means points per inverted list (FAISS warns below 39)
TRAIN_MIN_SAMPLE = 20_000  # enough for the 256 centroids of each PQ sub-quantiser
FLAT_MAX_BYTES = 256 * 2**20  # exact scan of ≤ 256 MiB per query: tens of ms, recall 1.0
BLOCK = 65_536  # rows per block of the brute-force truth


def ivfpq_shape(n: int, dim: int) -> tuple[int, int]:
    """Default (nlist, m): ~4·√N lists with ≥ 39 rows each; m sub-quantisers of 8 dims."""
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39, 65_536))
    # 8 dims per sub-quantiser: FAISS trains 4-dim ones ~30x slower, and re-scoring
    # a shortlist with the exact vectors recovers what the coarser codes lose.
    return nlist, _largest_divisor_at_most(dim, max(1, dim // 8))


def build_ivfpq(
    vectors: np.ndarray, *, nlist: int | None = None, m: int | None = None, seed: int = 0
) -> faiss.IndexIVFPQ:
    """IVF-PQ (8-bit codes, inner product) trained on a sample of all rows, holding every row.

    Ids are row numbers. Sampling the whole corpus (not its first rows) keeps the lists
    balanced when the data drifts along the file.
    """
    n, dim = vectors.shape
    if n < 1:
        raise InputError("IVF-PQ needs at least one vector to train on")
    default_nlist, default_m = ivfpq_shape(n, dim)
    nlist, m = nlist or default_nlist, m or default_m
    if dim % m:
        raise IndexUriError(f"ivfpq m={m} must divide the dimension {dim}")
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    # Small corpora train on fewer points than FAISS's rule of thumb: accepted, so stay quiet.
    index.cp.min_points_per_centroid = index.pq.cp.min_points_per_centroid = 1
    index.cp.seed = index.pq.cp.seed = seed
    size = min(n, max(TRAIN_PER_LIST * nlist, TRAIN_MIN_SAMPLE))
    rows = np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
    index.train(np.ascontiguousarray(vectors[rows], dtype=np.float32))
    for start in range(0, n, BLOCK):  # blocks: a memory-mapped corpus is never copied whole
        block = np.ascontiguousarray(vectors[start : start + BLOCK], dtype=np.float32)
        index.add_with_ids(block, np.arange(start, start + len(block), dtype=np.int64))
    return index


def new_hnsw(dim: int, M: int = HNSW_M) -> faiss.Index:
    """An empty inner-product HNSW graph taking ``add_with_ids`` (ids: row numbers)."""
    return faiss.IndexIDMap(faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT))


def search_params(
    structure: faiss.Index,
    *,
    ef_search: int | None = None,
    nprobe: int | None = None,
    selector: faiss.IDSelector | None = None,
) -> faiss.SearchParameters:
    """Per-query settings for ``structure.search(..., params=)``; a setting of the other kind
    (``nprobe`` for HNSW, ``ef_search`` for IVF) does not apply and is ignored."""
    inner = _inner(structure)
    args: dict[str, Any] = {} if selector is None else {"sel": selector}
    if isinstance(inner, faiss.IndexHNSW):
        if ef_search is not None:
            args["efSearch"] = int(ef_search)
        return faiss.SearchParametersHNSW(**args)  # type: ignore[attr-defined]
    if isinstance(inner, faiss.IndexIVF):
        if nprobe is not None:
            args["nprobe"] = int(nprobe)
        return faiss.SearchParametersIVF(**args)
    return faiss.SearchParameters(**args)


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
    """Search ``structure`` the way ``tune`` measured it: (scores, ids) [q, k], ids = rows.

    IVF-PQ re-scores its top ``shortlist`` with the exact ``vectors`` (the tuned value in
    ``index.json``); HNSW scores are already exact.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    inner = _inner(structure)
    if isinstance(inner, faiss.IndexIVF):
        probe = nprobe if nprobe is not None else inner.nprobe
        return search_ivfpq_exact(
            structure, vectors, queries, k, probe, shortlist or k, selector=selector
        )
    params = search_params(structure, ef_search=ef_search, nprobe=nprobe, selector=selector)
    return structure.search(queries, k, params=params)


def search_ivfpq_exact(
    structure: faiss.Index,
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    nprobe: int,
    shortlist: int,
    selector: faiss.IDSelector | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """IVF-PQ's top ``shortlist`` re-scored with the exact rows of ``vectors``: (scores, ids)
    [q, k], scores descending, -inf / -1 padding. Recovers what PQ's compression loses."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    wide = max(k, shortlist)
    params = search_params(structure, nprobe=nprobe, selector=selector)
    _, ids = structure.search(queries, wide, params=params)
    scores = np.full(ids.shape, -np.inf, dtype=np.float32)
    for i, (query, found) in enumerate(zip(queries, ids, strict=True)):
        valid = np.flatnonzero(found >= 0)
        # Sorted rows: sequential reads when ``vectors`` is a memory-mapped file.
        order = valid[np.argsort(found[valid], kind="stable")]
        scores[i, order] = np.asarray(vectors[found[order]], dtype=np.float32) @ query
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_scores = np.take_along_axis(scores, order, axis=1)
    top_ids = np.where(np.isfinite(top_scores), np.take_along_axis(ids, order, axis=1), -1)
    return top_scores, top_ids


def held_out(n: int, sample: int, seed: int) -> np.ndarray:
    """The rows whose vectors serve as tuning queries (sorted, distinct)."""
    return np.sort(np.random.default_rng(seed).choice(n, min(sample, n), replace=False))


def recall(found: np.ndarray, truth: np.ndarray, rows: np.ndarray, k: int) -> float:
    """Mean |found ∩ truth| / k per query, the query's own row removed from both lists."""
    hits = 0
    for row, got, true in zip(rows, found, truth, strict=True):
        got = [i for i in got.tolist() if i != row and i >= 0][:k]
        true = [i for i in true.tolist() if i != row][:k]
        hits += len(set(got) & set(true))
    return hits / (k * len(rows))


def tune(
    structure: faiss.Index,
    vectors: np.ndarray,
    *,
    k: int = 10,
    target: float = 0.95,
    sample: int = 200,
    seed: int = 0,
    queries: np.ndarray | None = None,
) -> dict[str, Any]:
    """The cheapest setting on a doubling ladder whose recall@k, measured on ``sample`` of the
    corpus's own rows as queries, reaches ``target``: efSearch for HNSW; nprobe and an exact
    re-scoring shortlist for IVF-PQ. ``reached`` is False (and the ladder's top is returned)
    when the target is out of reach; ``prefer_exact`` when an exact scan keeps the promise
    better (not reached, or the setting reads about as much as a scan). ``queries``: tune on
    ``sample`` of these instead (e.g. the other modality's embeddings, which a cross-modal
    search sends and which sit farther from the corpus than its own rows)."""
    n = structure.ntotal
    if n < 2:
        raise InputError("tuning needs at least two indexed vectors")
    k = min(k, n - 1)
    base = vectors[:n]
    if queries is None:
        rows = held_out(n, sample, seed)
        queries = np.ascontiguousarray(base[rows], dtype=np.float32)
    else:  # outside the corpus: no own row to remove (-1 matches no id)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        queries = queries[held_out(len(queries), sample, seed)]
        rows = np.full(len(queries), -1, dtype=np.int64)
    truth = top_k(base, queries, k + 1)[1]
    result: dict[str, Any] = {"recall_queries": len(rows), "target": target}
    inner = _inner(structure)
    if isinstance(inner, faiss.IndexHNSW):
        result |= _tune_hnsw(structure, queries, truth, rows, k, target)
    elif isinstance(inner, faiss.IndexIVF):
        result |= _tune_ivf(structure, base, queries, truth, rows, k, target, inner.nlist)
    else:
        raise InputError(f"cannot tune a {type(inner).__name__}: it has no search setting")
    result[f"recall_at_{k}"] = result.pop("recall")
    result["prefer_exact"] = not result["reached"] or _costs_a_scan(inner, result)
    return result


def _costs_a_scan(inner: Any, tuned: dict[str, Any]) -> bool:
    """Whether the tuned setting reads about as much as an exact scan (uniform random data in
    high dimensions, where no graph or list structure helps)."""
    if isinstance(inner, faiss.IndexHNSW):  # each visited node compares its 2M neighbours
        return tuned["ef_search"] * inner.hnsw.nb_neighbors(0) >= inner.ntotal  # type: ignore[attr-defined]
    return tuned["nprobe"] * 2 >= inner.nlist


def _tune_hnsw(structure, queries, truth, rows, k, target) -> dict[str, Any]:
    measured: dict[str, Any] = {}
    for ef in [ef for ef in EF_LADDER if ef > k] or [k + 1]:
        params = search_params(structure, ef_search=ef)
        _, found = structure.search(queries, k + 1, params=params)
        measured = {"ef_search": ef, "recall": recall(found, truth, rows, k)}
        if measured["recall"] >= target or ef >= structure.ntotal:
            break
    return {**measured, "reached": measured["recall"] >= target}


def _tune_ivf(structure, base, queries, truth, rows, k, target, nlist) -> dict[str, Any]:
    def measure(nprobe: int, shortlist: int) -> dict[str, Any]:
        _, found = search_ivfpq_exact(structure, base, queries, k + 1, nprobe, shortlist)
        return {"nprobe": nprobe, "shortlist": shortlist, "recall": recall(found, truth, rows, k)}

    shortlists = [(k + 1) * 2**i for i in range(int(math.log2(SHORTLIST_MAX)) + 1)]
    nprobes = sorted({min(2**i, nlist) for i in range(int(math.log2(nlist)) + 2)})
    for nprobe in nprobes:
        # The longest shortlist shows what this nprobe can reach at best; then the shortest one.
        best = measure(nprobe, shortlists[-1])
        if best["recall"] >= target or nprobe == nlist:
            break
    for shortlist in shortlists[:-1]:
        if (found := measure(best["nprobe"], shortlist))["recall"] >= target:
            best = found
            break
    return {**best, "reached": best["recall"] >= target}


def choose_kind(n: int, dim: int, memory_budget_bytes: int | None = None) -> tuple[str, str]:
    """``?kind=auto``: flat while an exact scan is fast, else HNSW when its graph and vectors
    fit the memory budget, else IVF-PQ; with the reason and the recall to expect."""
    scan = n * dim * 4
    if scan <= FLAT_MAX_BYTES:
        return "flat", (
            f"exact search: {n:,} × {dim} scans {_size(scan)} per query (≤ {_size(FLAT_MAX_BYTES)}"
            "); recall 1.0"
        )
    hnsw = hnsw_bytes(n, dim)
    if memory_budget_bytes is None or hnsw <= memory_budget_bytes:
        budget = (
            "no memory budget"
            if memory_budget_bytes is None
            else (f"the {_size(memory_budget_bytes)} budget")
        )
        return "hnsw", (
            f"HNSW: graph + vectors ≈ {_size(hnsw)} fit {budget}; efSearch tuned at build time "
            "for recall@10 ≥ 0.95 (recorded in index.json)"
        )
    nlist, m = ivfpq_shape(n, dim)
    codes = n * (m + 8) + nlist * dim * 4
    return "ivfpq", (
        f"IVF-PQ: HNSW needs ≈ {_size(hnsw)}, over the {_size(memory_budget_bytes)} budget; "
        f"{nlist} lists, {m}-byte codes ≈ {_size(codes)}; nprobe and an exact re-scoring "
        "shortlist tuned at build time for recall@10 ≥ 0.95 (recorded in index.json)"
    )


def hnsw_bytes(n: int, dim: int, M: int = HNSW_M) -> int:
    """Resident bytes of an HNSW graph over ``n`` fp32 vectors: vectors, 2M level-0 links,
    ~M/(M-1) upper-level links, levels and ids."""
    return int(n * (4 * dim + 4 * 2 * M + 4 * M / (M - 1) * M + 8 + 8))


def _inner(structure: faiss.Index) -> faiss.Index:
    index = faiss.downcast_index(structure)
    while isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
        index = faiss.downcast_index(index.index)
    return index


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, limit + 1) if n % d == 0)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
