"""Vector indexes behind one API, chosen by URI (``faiss://dir``, ``milvus://file.db``, …)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from jointspace.index.base import IndexHit, VectorIndex
from jointspace.index.filters import FilterError, parse_filter

SCHEMES = ("faiss", "milvus")


def open_index(uri: str, dim: int | None = None, **info) -> VectorIndex:
    """Open (or, given ``dim``, create) an index.

    ``faiss://runs/idx`` or a plain path: embedded FAISS (``?kind=hnsw`` for HNSW);
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

        return FaissIndex(Path(location), dim, kind=options.get("kind", "flat"), **info)
    from jointspace.index.milvus_backend import MilvusIndex

    target = location if location.endswith(".db") else f"http://{location}"
    return MilvusIndex(target, options.get("collection", "jointspace"), dim, **info)


__all__ = ["FilterError", "IndexHit", "VectorIndex", "open_index", "parse_filter"]
