"""Vector indexes behind one API, chosen by URI (``faiss://dir``, ``milvus://file.db``, …)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

# The module, not its functions: importing jointspace.index.build rebinds `build` here.
from jointspace import registry
from jointspace.index.base import IndexHit, VectorIndex
from jointspace.index.errors import IndexUriError
from jointspace.index.filters import FilterError, parse_filter


def open_index(
    uri: str, dim: int | None = None, *, mode: str = "r", force: bool = False, **info
) -> VectorIndex:
    """Open an index for reading (``mode="r"``, the default) or writing (``mode="w"``).

    A reader never writes; a writer takes the index's lock, creates the index given ``dim``,
    and saves only what it changed. ``force=True`` (writers) discards what the index held.
    ``faiss://runs/idx`` or a plain path: embedded FAISS (``?kind=hnsw``, ``?kind=ivfpq`` with
    optional ``nlist``, ``m`` and ``train_min``, or ``?kind=auto``; ``ef_search`` and ``nprobe``
    override the recorded tuning for this open);
    ``milvus://runs/idx.db``: embedded Milvus Lite; ``milvus://host:19530``: a Milvus server.
    ``?collection=NAME`` picks the Milvus collection (default ``jointspace``). The scheme names
    the back-end in the registry (``available("index")``), which builds it.
    """
    scheme, _, rest = uri.partition("://") if "://" in uri else ("faiss", "", uri)
    try:
        opener = registry.lookup("index", scheme)
    except registry.UnknownPartError:
        use = " or ".join(f"{name}://" for name in registry.available("index"))
        raise IndexUriError(f"unknown index scheme {scheme!r} in {uri!r}; use {use}") from None
    if mode not in ("r", "w"):
        raise IndexUriError(f"index mode must be 'r' (read) or 'w' (write), not {mode!r}")
    parts = urlsplit(f"x://{rest}")
    options = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    accepted = getattr(opener, "options", ())
    if unknown := sorted(set(options) - set(accepted)):
        raise IndexUriError(
            f"unknown option {unknown[0]!r} in index {uri!r}; {scheme} takes {', '.join(accepted)}"
        )
    location = rest.split("?", 1)[0]
    if not location:
        raise IndexUriError(f"index {uri!r} names no folder, file or server")
    return registry.build(
        "index",
        scheme,
        location=location,
        dim=dim,
        options=options,
        uri=uri,
        mode=mode,
        force=force,
        **info,
    )


__all__ = ["FilterError", "IndexHit", "IndexUriError", "VectorIndex", "open_index", "parse_filter"]
