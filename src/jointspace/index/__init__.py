"""Vector indexes behind one API, chosen by URI (``faiss://dir``, ``milvus://file.db``, …)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from jointspace.index.base import IndexHit, VectorIndex
from jointspace.index.errors import IndexUriError
from jointspace.index.filters import FilterError, parse_filter

SCHEMES = ("faiss", "milvus")
IVFPQ_OPTIONS = ("nlist", "m", "nprobe", "train_min")
OPTIONS = {"faiss": ("kind", *IVFPQ_OPTIONS), "milvus": ("collection",)}


def open_index(
    uri: str, dim: int | None = None, *, mode: str = "r", force: bool = False, **info
) -> VectorIndex:
    """Open an index for reading (``mode="r"``, the default) or writing (``mode="w"``).

    A reader never writes; a writer takes the index's lock, creates the index given ``dim``,
    and saves only what it changed. ``force=True`` (writers) discards what the index held.
    ``faiss://runs/idx`` or a plain path: embedded FAISS (``?kind=hnsw`` or ``?kind=ivfpq``, with
    optional ``nlist``, ``m``, ``nprobe`` and ``train_min`` for IVF-PQ);
    ``milvus://runs/idx.db``: embedded Milvus Lite; ``milvus://host:19530``: a Milvus server.
    ``?collection=NAME`` picks the Milvus collection (default ``jointspace``).
    """
    scheme, _, rest = uri.partition("://") if "://" in uri else ("faiss", "", uri)
    if scheme not in SCHEMES:
        raise IndexUriError(
            f"unknown index scheme {scheme!r} in {uri!r}; use faiss:// or milvus://"
        )
    if mode not in ("r", "w"):
        raise IndexUriError(f"index mode must be 'r' (read) or 'w' (write), not {mode!r}")
    parts = urlsplit(f"x://{rest}")
    options = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    if unknown := sorted(set(options) - set(OPTIONS[scheme])):
        known = ", ".join(OPTIONS[scheme])
        raise IndexUriError(
            f"unknown option {unknown[0]!r} in index {uri!r}; {scheme} takes {known}"
        )
    location = rest.split("?", 1)[0]
    if not location:
        raise IndexUriError(f"index {uri!r} names no folder, file or server")
    if scheme == "faiss":
        from jointspace.index.faiss_backend import FaissIndex

        kind = options.pop("kind", "flat")
        tuning = {k: _positive_int(k, options[k], uri) for k in IVFPQ_OPTIONS if k in options}
        return FaissIndex(
            Path(location), dim, kind=kind, uri=uri, mode=mode, force=force, **tuning, **info
        )
    from jointspace.index.milvus_backend import MilvusIndex

    target = location if location.endswith(".db") else f"http://{location}"
    collection = options.get("collection", "jointspace")
    return MilvusIndex(target, collection, dim, uri=uri, mode=mode, force=force, **info)


def _positive_int(name: str, text: str, uri: str) -> int:
    if not text.isdecimal() or not 1 <= int(text) < 2**31:
        raise IndexUriError(f"index option {name}={text!r} must be a positive integer, in {uri!r}")
    return int(text)


__all__ = ["FilterError", "IndexHit", "IndexUriError", "VectorIndex", "open_index", "parse_filter"]
