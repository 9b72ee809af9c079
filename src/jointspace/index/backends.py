"""Openers of each index back-end, built by URI scheme through the registry (``jointspace.parts``).

Each takes the URI's location and ``?options`` and declares which options it accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jointspace.index.base import VectorIndex
from jointspace.index.errors import IndexUriError

# Build options (saved in index.json) and search options (per open: ef_search, nprobe).
FAISS_OPTIONS = ("nlist", "m", "train_min", "ef_search", "nprobe")


def open_faiss(location: str, dim: int | None, options: dict[str, str], **kwargs) -> VectorIndex:
    """Embedded FAISS in folder ``location``: ``kind`` flat (default), hnsw, ivfpq or auto."""
    from jointspace.index.faiss_backend import FaissIndex

    uri = kwargs.get("uri", location)
    kind = options.get("kind", "flat")
    tuning: dict[str, Any] = {
        k: _positive_int(k, options[k], uri) for k in FAISS_OPTIONS if k in options
    }
    return FaissIndex(Path(location), dim, kind=kind, **tuning, **kwargs)


open_faiss.options = ("kind", *FAISS_OPTIONS)  # type: ignore[attr-defined]


def open_milvus(location: str, dim: int | None, options: dict[str, str], **kwargs) -> VectorIndex:
    """Milvus Lite when ``location`` is a ``.db`` file, else a Milvus server at ``host:port``."""
    from jointspace.index.milvus_backend import MilvusIndex

    target = location if location.endswith(".db") else f"http://{location}"
    collection = options.get("collection", "jointspace")
    return MilvusIndex(target, collection, dim, **kwargs)


open_milvus.options = ("collection",)  # type: ignore[attr-defined]


def _positive_int(name: str, text: str, uri: str) -> int:
    if not text.isdecimal() or not 1 <= int(text) < 2**31:
        raise IndexUriError(f"index option {name}={text!r} must be a positive integer, in {uri!r}")
    return int(text)
