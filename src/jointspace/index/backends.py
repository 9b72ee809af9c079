"""Openers of each index back-end, built by URI scheme through the registry (``jointspace.parts``).

Each takes the URI's location and ``?options`` and declares which options it accepts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jointspace.index.base import VectorIndex
from jointspace.index.errors import IndexUriError

IVFPQ_OPTIONS = ("nlist", "m", "nprobe", "train_min")
INT_OPTIONS = (*IVFPQ_OPTIONS, "ef_search")
FAISS_KINDS = ("flat", "hnsw", "ivfpq", "auto")
STORAGES = ("fp32", "fp16", "int8")
UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def open_faiss(location: str, dim: int | None, options: dict[str, str], **kwargs) -> VectorIndex:
    """Embedded FAISS in folder ``location``: ``kind`` flat (default), hnsw, ivfpq or auto
    (picked from the corpus size and ``memory``); ``ef_search``/``nprobe`` are search defaults,
    ``storage`` fp32 (default), fp16 or int8 the exact scan's copy of the vectors."""
    from jointspace.index.faiss_backend import FaissIndex

    uri = kwargs.get("uri", location)
    kind = options.get("kind", "flat")
    if kind not in FAISS_KINDS:
        raise IndexUriError(
            f"faiss index kind must be one of {FAISS_KINDS}, got {kind!r} in {uri!r}"
        )
    tuning: dict[str, Any] = {
        k: _positive_int(k, options[k], uri) for k in INT_OPTIONS if k in options
    }
    if "memory" in options:
        if kind != "auto":
            raise IndexUriError(f"index option memory= is the budget of kind=auto, in {uri!r}")
        tuning["memory"] = parse_memory(options["memory"], uri)
    if "storage" in options:
        if options["storage"] not in STORAGES:
            raise IndexUriError(
                f"index option storage={options['storage']!r} must be one of {STORAGES}, in {uri!r}"
            )
        tuning["storage"] = options["storage"]
    return FaissIndex(Path(location), dim, kind=kind, **tuning, **kwargs)


open_faiss.options = ("kind", *INT_OPTIONS, "memory", "storage")  # type: ignore[attr-defined]


def parse_memory(text: str, uri: str) -> int:
    """A memory budget such as ``4GB``, ``512MB``, ``1.5G`` or plain bytes, in bytes (KB = 1024)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    size = int(float(found[1]) * UNITS[found[2]]) if found else 0
    if not found or found[1] == "" or size < 1 or (not found[2] and "." in found[1]):
        raise IndexUriError(
            f"index option memory={text!r} must be a size such as 4GB or 512MB, in {uri!r}"
        )
    return size


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
