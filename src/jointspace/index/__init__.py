"""Vector indexes behind one API, chosen by URI (``faiss://dir``, ``milvus://file.db``, …)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from jointspace.index.base import IndexHit, VectorIndex
from jointspace.index.filters import FilterError, parse_filter

SCHEMES = ("faiss", "milvus")
IVFPQ_OPTIONS = ("nlist", "m", "nprobe", "train_min")


def open_index(uri: str, dim: int | None = None, **info) -> VectorIndex:
    """Open (or, given ``dim``, create) an index.

    ``faiss://runs/idx`` or a plain path: embedded FAISS (``?kind=hnsw`` or ``?kind=ivfpq``, with
    optional ``nlist``, ``m``, ``nprobe`` and ``train_min`` for IVF-PQ);
    ``milvus://runs/idx.db``: embedded Milvus Lite; ``milvus://host:19530``: a Milvus server.
    ``?collection=NAME`` picks the Milvus collection (default ``jointspace``).
    """
    scheme, _, rest = uri.partition("://") if "://" in uri else ("faiss", "", uri)
    if scheme not in SCHEMES:
        raise ValueError(f"unknown index scheme {scheme!r} in {uri!r}; use faiss:// or milvus://")
    parts = urlsplit(f"x://{rest}")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    location = rest.split("?", 1)[0]
    if scheme == "faiss":
        from jointspace.index.faiss_backend import FaissIndex

        kind = options.pop("kind", "flat")
        tuning = {k: _positive_int(k, options[k]) for k in IVFPQ_OPTIONS if k in options}
        return FaissIndex(Path(location), dim, kind=kind, **tuning, **info)
    from jointspace.index.milvus_backend import MilvusIndex

    target = location if location.endswith(".db") else f"http://{location}"
    return MilvusIndex(target, options.get("collection", "jointspace"), dim, **info)


def _positive_int(name: str, text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"index option {name}={text!r} must be a positive integer")
    return int(text)


__all__ = ["FilterError", "IndexHit", "VectorIndex", "open_index", "parse_filter"]
