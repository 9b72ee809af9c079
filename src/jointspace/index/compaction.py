"""Compaction: the log (and its scan copy) rewritten without deleted rows, as a new generation.

The new files (``vectors.g1.f32``, …) are written and fsynced beside the old ones; one SQLite
commit — item keys renumbered, tombstones and chunk records replaced, the new generation named —
is the commit point; the old files are removed after it. Whatever a compaction killed on the way
leaves (new files before its commit, old ones after) the next writer removes. Readers open the
files SQLite names; one opened before a compaction is refused in one line by its next search.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from jointspace.atomic import disk_full_translated
from jointspace.errors import ArtifactError
from jointspace.index.faiss_ann import Ann
from jointspace.index.faiss_files import CACHES, GENERATION, LOGS, VECTORS, generation_file
from jointspace.index.scan_copy import ScanCopy
from jointspace.index.vector_log import VectorLog

if TYPE_CHECKING:
    from jointspace.index.faiss_backend import FaissIndex

SHARE, MINIMUM = 1 / 3, 1024  # a writer's close compacts past this share and count of deletes
BLOCK = 65536  # rows copied at a time
log = logging.getLogger(__name__)


class CompactedError(ArtifactError):
    """A reader's index was compacted by a writer since it opened: its row numbers are stale."""


def due(rows: int, dead: int) -> bool:
    """Whether a writer's close compacts: each compaction then removes at least a third of the
    rows it copies, so its cost is paid for by the deletes since the last (amortised O(1))."""
    return dead >= MINIMUM and dead > SHARE * rows


def compact(index: FaissIndex) -> int:
    """Rewrite ``index`` (a writer) without its deleted rows; returns how many were removed."""
    index.save()  # the tombstones committed: what the rewrite leaves out
    removed = len(index._dead())
    if not removed:
        return 0
    live = index.catalog.keys("SELECT key FROM items ORDER BY key")
    assert len(live) == index.log.rows - removed, "checked at open: items = rows - tombstones"
    generation = index.generation + 1
    log.info("compacting %s: %d rows, %d deleted", index.uri, index.log.rows, removed)
    new_log, new_copy = _write(index, live, generation)
    try:
        chunk = new_log.pending()
        if new_copy is not None:
            new_copy.codes.pending()
        _sync_folder(index.path)  # the new files' names are durable before SQLite names them
        for name in CACHES.values():  # they number the old rows; rebuilt below
            (index.path / name).unlink(missing_ok=True)
        index.ann.saved = 0  # so a close saves the cache again should this compaction fail
        with index.catalog.full():
            index.catalog.renumber(live, generation)
            count = len(live)
            index.catalog.commit(chunk, rows=count, items=count, fields=index.fields)
    except BaseException:
        if index.catalog.db.in_transaction:
            index.catalog.db.execute("ROLLBACK")
        _close(new_log, new_copy)
        remove_stale(index.path, index.generation)
        raise
    new_log.mark_committed()
    if new_copy is not None:
        new_copy.codes.mark_committed()
    _close(index.log, index.copy)
    index.log, index.copy, index.generation = new_log, new_copy, generation
    index.dead = np.empty(0, dtype=np.int64)
    index._filters.clear()
    index.ann = Ann(index.path, index.ann.kind, index.dim)
    index.ann.load(new_log.view())  # HNSW rebuilt now, IVF-PQ retrained at close
    remove_stale(index.path, generation)
    return removed


def _write(index: FaissIndex, live: np.ndarray, generation: int):
    """The live rows of the log and of its scan copy, appended to the next generation's files."""
    new_log = VectorLog(index.path / generation_file(VECTORS, generation), index.dim, 0, True)
    new_copy = None
    if index.copy is not None:
        new_copy = ScanCopy(index.path, index.dim, index.copy.spec, 0, True, generation)
    try:
        vectors = index.log.view()
        codes = None if index.copy is None else index.copy.codes.view()
        for start in range(0, len(live), BLOCK):
            rows = live[start : start + BLOCK]
            new_log.append(vectors[rows])
            if new_copy is not None and codes is not None:
                new_copy.codes.append(codes[rows])  # the codes as they are: no re-encoding
    except BaseException:
        _close(new_log, new_copy)
        remove_stale(index.path, index.generation)
        raise
    return new_log, new_copy


def remove_stale(folder: Path, generation: int) -> None:
    """Remove log files of every generation but ``generation`` (a writer's; it holds the lock)."""
    for name in os.listdir(folder):
        found = GENERATION.fullmatch(name)
        other = int(found[2]) if found else 0 if name in LOGS else None
        if other is not None and other != generation:
            (folder / name).unlink(missing_ok=True)


def check_current(index: FaissIndex) -> None:
    """Refuse a reader whose index was compacted since it opened (its row numbers are stale)."""
    now = index.catalog.generation()
    if now != index.generation:
        raise CompactedError(
            f"index {index.uri} was compacted by a writer after it was opened here (its rows "
            "were renumbered): open it again"
        )


def by_key(index: FaissIndex, keys: list[int]) -> dict[int, tuple[str, dict]]:
    """Items by row number; for a reader, read in one snapshot with its generation checked."""
    if index.writable:  # a writer holds the lock: nobody else compacts
        return index.catalog.by_key(keys)
    index.catalog.db.execute("BEGIN")
    try:
        check_current(index)
        return index.catalog.by_key(keys)
    finally:
        index.catalog.db.execute("COMMIT")


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        with disk_full_translated(folder):
            os.fsync(fd)
    finally:
        os.close(fd)


def _close(vectors: VectorLog, copy: ScanCopy | None) -> None:
    vectors.close()
    if copy is not None:
        copy.codes.close()
