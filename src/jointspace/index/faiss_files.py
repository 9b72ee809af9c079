"""The files of a FAISS index folder (format 2): names, the writer's lock, ``index.json``.

``vectors.f32`` (append-only rows, the truth) and ``meta.sqlite`` (items, tombstones, the
committed row count and chunk checksums) hold the index; ``hnsw.faiss`` / ``ivfpq.faiss`` are
derived caches rebuilt from the log when missing; ``vectors.f16`` / ``codes.i8`` the scan copy of
``storage=fp16|int8`` (same rows as the log, committed with it). A compaction writes the next
generation of the log and its copy (``vectors.g1.f32``, ``codes.g1.i8``, …): SQLite names which.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path

from jointspace.atomic import atomic_path
from jointspace.index.errors import DamagedIndexError, IndexLockedError, OldFormatError

FORMAT = 2
INFO, VECTORS, META, LOCK = "index.json", "vectors.f32", "meta.sqlite", "index.lock"
CACHES = {"hnsw": "hnsw.faiss", "ivfpq": "ivfpq.faiss"}
COPIES = {"fp16": "vectors.f16", "int8": "codes.i8"}  # storage=: the exact scan's copy
OLD_FILES = ("index.faiss", "index.faiss.next")  # format 1: removed by a forced rebuild
DATA_FILES = (
    *(INFO, VECTORS, META, META + "-journal"),
    *(*CACHES.values(), *COPIES.values(), *OLD_FILES),
)
KINDS = ("flat", "hnsw", "ivfpq", "auto")
LOGS = (VECTORS, *COPIES.values())  # the files a compaction rewrites, one set per generation
GENERATION = re.compile(r"(vectors|codes)\.g([0-9]+)\.(f32|f16|i8)")


def generation_file(name: str, generation: int) -> str:
    """``vectors.f32`` (a log never compacted: generation 0) or ``vectors.g3.f32``."""
    if not generation:
        return name
    stem, _, suffix = name.rpartition(".")
    return f"{stem}.g{generation}.{suffix}"


def own_file(name: str) -> bool:
    """Whether a folder entry is one an index writes (so a folder of only these is an index's)."""
    temp = name.endswith(".tmp") and any(name.startswith(f".{t}.") for t in DATA_FILES)
    return name in DATA_FILES or name == LOCK or temp or bool(GENERATION.fullmatch(name))


class WriterLock:
    """An exclusive ``flock`` on ``index.lock``: one writer per index, across processes."""

    def __init__(self, folder: Path, uri: str):
        self.fd: int | None = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self.fd, 32).decode(errors="replace").strip()
            self.release()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise IndexLockedError(
                f"index {uri} is being written by another process{who}: "
                "wait for it to finish, then retry"
            ) from None
        # The pid only names the holder in the error above; the flock is what excludes.
        os.ftruncate(self.fd, 0)
        os.write(self.fd, str(os.getpid()).encode())

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def read_info(folder: Path, uri: str) -> dict:
    """``index.json``, refused clearly when it is not the object a format-2 writer left."""
    path = folder / INFO
    try:
        info = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise DamagedIndexError(uri, f"{path} is not text") from None
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise DamagedIndexError(uri, f"{path} is not valid JSON ({err.msg} at {where})") from None
    dim = info.get("dim") if isinstance(info, dict) else None
    if type(dim) is not int or dim < 1 or info.get("kind") not in KINDS:
        raise DamagedIndexError(uri, f"{path} lacks a positive 'dim' and a 'kind' in {KINDS}")
    if info.get("format") != FORMAT:
        if "format" not in info:  # what every index before format 2 wrote
            raise OldFormatError(uri)
        raise DamagedIndexError(uri, f"{path} has format {info['format']!r}, not {FORMAT}")
    return info


def write_info(folder: Path, info: dict) -> None:
    """Write ``index.json`` atomically."""
    with atomic_path(folder / INFO) as tmp:
        tmp.write_text(json.dumps(info, indent=2))
