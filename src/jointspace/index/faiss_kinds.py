"""The FAISS structures behind each index kind: exact flat, HNSW, and IVF-PQ once trained."""

from __future__ import annotations

import faiss
import numpy as np

from jointspace.index.errors import IndexUriError

TRAIN_MIN = 2048  # ivfpq stays exact (flat) until it holds this many vectors to train on


def empty_vectors(dim: int, kind: str) -> faiss.Index:
    """A new, empty id-mapped index of ``kind``."""
    base = (
        faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        if kind == "hnsw"
        else faiss.IndexFlatIP(dim)  # ivfpq too, until it has enough to train on
    )
    return faiss.IndexIDMap2(base)


def train_ivfpq(flat: faiss.IndexIDMap2, info: dict) -> faiss.IndexIVFPQ:
    """Train an IVF-PQ index on every vector of ``flat`` and move them into it, keeping ids."""
    n, dim = flat.ntotal, flat.d
    vectors = flat.index.reconstruct_n(0, n)
    keys = faiss.vector_to_array(flat.id_map).astype(np.int64)
    nlist = int(info.setdefault("nlist", max(1, min(int(4 * np.sqrt(n)), n // 39))))
    m = int(info.setdefault("m", _largest_divisor_at_most(dim, max(1, dim // 2))))
    info.setdefault("nprobe", min(nlist, 16))
    if dim % m:
        raise IndexUriError(f"ivfpq m={m} must divide the dimension {dim}")
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    # Small corpora train on fewer points than FAISS's rule of thumb: accepted, so stay quiet.
    index.cp.min_points_per_centroid = index.pq.cp.min_points_per_centroid = 1
    index.train(vectors)
    index.add_with_ids(vectors, keys)
    return index


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, limit + 1) if n % d == 0)
