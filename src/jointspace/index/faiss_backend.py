"""Embedded FAISS index (folder format 2): an append-only vector log plus SQLite metadata.

Opened for reading (``mode="r"``) it writes nothing, so a read-only folder can be searched. A
writer (``mode="w"``) holds the folder's lock; ``save()`` appends what was added (never
rewriting the log) and commits once in SQLite, so its cost does not grow with the index. Exact
search scans the memory-mapped log; ``hnsw`` / ``ivfpq`` search a derived cache (``faiss_ann``).
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from jointspace.errors import ArtifactError, JointspaceError
from jointspace.index import compaction, scan
from jointspace.index.base import IndexHit, VectorIndex
from jointspace.index.errors import IndexUriError, NotAnIndexError
from jointspace.index.faiss_files import INFO, KINDS, WriterLock, write_info
from jointspace.index.faiss_open import FaissFolder
from jointspace.index.filters import check_fields, parse_filter

EXACT_SUBSET = 20_000  # an ANN search over fewer allowed rows than this scans them exactly
CACHED_FILTERS = 64
DEFAULT_EF, MAX_EF = 16, 4096  # FAISS's efSearch default; the most a filter widens it to
SEARCH_OPTIONS = ("ef_search", "nprobe")  # per open (URI), never saved


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


class FaissIndex(FaissFolder, VectorIndex):
    """Inner-product search over string ids: exact ``flat``, or approximate ``hnsw``/``ivfpq``.

    ``ivfpq`` searches exactly until a writer closes it with at least ``train_min`` rows, then
    trains on a sample of the whole corpus; ``auto`` picks a structure at close.
    """

    def __init__(
        self,
        path: str | Path,
        dim: int | None = None,
        kind: str = "flat",
        *,
        uri: str | None = None,
        mode: str = "r",
        force: bool = False,
        **info,
    ):
        self.path, self.uri = Path(path), uri or f"faiss://{path}"
        if mode not in ("r", "w"):
            raise IndexUriError(f"index mode must be 'r' (read) or 'w' (write), not {mode!r}")
        if kind not in KINDS:
            raise IndexUriError(f"faiss index kind must be one of {KINDS}, got {kind!r}")
        self.writable, self.dirty, self.closed = mode == "w", False, False
        self.settings = {k: info.pop(k) for k in SEARCH_OPTIONS if k in info}
        self.asked_storage: str | None = info.pop("storage", None)
        # Web servers call from a thread pool: one connection, serialised by a lock.
        self.lock = threading.RLock()
        self.writer: WriterLock | None = None
        self._filters: dict[str | None, tuple] = {}
        # Keys deleted since the last merge into ``dead``: merged once, when a search needs them
        # (merging per delete made D one-at-a-time deletes cost O(D²)).
        self._deleted: list[np.ndarray] = []
        self._deleted_rows = 0
        self._tuning: tuple[np.ndarray | None, dict[str, Any]] = (None, {"source": "corpus"})
        try:
            self._start(dim, kind, force, info)
        except BaseException as err:
            self._release()
            if not isinstance(err, OSError) or isinstance(err, JointspaceError):
                raise
            # Permissions, a folder where a file should be, …: the environment, said in one line.
            where = f" ({err.filename})" if err.filename else ""
            raise ArtifactError(f"index {self.uri}: {err.strerror or err}{where}") from None

    def _start(self, dim: int | None, kind: str, force: bool, info: dict) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise NotAnIndexError(f"index {self.uri}: {self.path} is a file, not an index folder")
        if not self.writable:
            if not (self.path / INFO).is_file():
                self._missing()
            return self._open(dim, info)
        if force and dim is None:
            raise IndexUriError(f"index {self.uri}: rebuilding (force) needs dim=")
        if not (self.path / INFO).is_file() and not force:
            if dim is None:
                self._missing()
            self._check_new_folder()
        self.path.mkdir(parents=True, exist_ok=True)
        self.writer = WriterLock(self.path, self.uri)
        return self._open_for_writing(dim, kind, force, info)

    @property
    def trained(self) -> bool:
        """Whether searches use an approximate structure (False: exact scans of the log)."""
        return self.ann.structure is not None

    @_locked
    def add(self, ids, vectors, metadata=None) -> None:
        self._check_writable()
        vectors = self._check_add(ids, vectors, metadata)
        metadata = metadata or [{} for _ in ids]
        start = self.log.rows  # keys are rows of the log: assigned here, never looked up
        with self.catalog.full(), self.catalog.adding(start):
            self.catalog.insert(start, ids, metadata)  # refuses duplicates, inserting none
            if self.copy is not None:
                self.copy.append(vectors)
            try:
                self.log.append(vectors)  # a full disk: the rows above are rolled back too
            except BaseException:
                if self.copy is not None:
                    self.copy.codes.cut(start)
                raise
        self.dirty = True
        self.fields.update(*metadata)
        self._filters.clear()
        if self.ann.structure is not None:  # flat and untrained IVF-PQ need no new mapping
            self.ann.catch_up(self.log.view())

    @_locked
    def search(
        self, queries, k=10, filter=None, *, ef_search=None, nprobe=None
    ) -> list[list[IndexHit]]:
        queries = self._check_search(queries, k)
        rows, selector = self._subset(filter)
        available = self.log.rows if rows is None else len(rows)
        if available == 0:
            return [[] for _ in queries]
        fetch = min(k, available)
        if self.ann.structure is None or (rows is not None and len(rows) <= EXACT_SUBSET):
            scores, keys = self._exact(queries, fetch, rows)
        else:
            chosen = {"ef_search": ef_search, "nprobe": nprobe}
            settings = {
                name: chosen.get(name) or self.settings.get(name) or self.info.get(name)
                for name in ("ef_search", "nprobe", "shortlist")
            }
            if selector is not None and rows is not None and self.ann.kind == "hnsw":
                # The graph walk skips what the filter excludes: widen it by as much.
                widen = self.log.rows / len(rows)
                ef = settings["ef_search"] or DEFAULT_EF
                settings["ef_search"] = min(int(ef * widen), MAX_EF)
            view = self.log.view()
            scores, keys = self.ann.search(view, queries, fetch, selector, settings)
        found = compaction.by_key(self, sorted({int(key) for key in keys.flat if key >= 0}))
        return [
            [
                IndexHit(found[key][0], score, found[key][1])
                for score, key in zip(row_scores, row_keys, strict=True)
                if key in found  # gone: deleted by a writer since this reader opened
            ]
            for row_scores, row_keys in zip(scores.tolist(), keys.tolist(), strict=True)
        ]

    def _exact(self, queries: np.ndarray, k: int, rows: np.ndarray | None):
        """Exact top-k: over the scan copy re-scored with fp32 rows, or the fp32 log itself."""
        if self.copy is None:
            return scan.top_k(self.log.view(), queries, k, rows=rows)
        return self.copy.search(self.log.view(), queries, k, rows)

    def _subset(self, filter: str | None) -> tuple[np.ndarray | None, Any]:
        """Sorted allowed rows (None: every row) and a FAISS selector for them, cached."""
        if filter in self._filters:
            return self._filters[filter][:2]
        if filter:
            expr = parse_filter(filter)
            check_fields(expr, self.fields, filter)
            if self.writable:
                with self.catalog.full():
                    self.catalog.index_filters()
            rows = self.catalog.allowed(expr)
            rows = rows[: np.searchsorted(rows, self.log.rows)]  # a reader sees its snapshot
        elif len(dead := self._dead()):
            rows = np.setdiff1d(np.arange(self.log.rows), dead, assume_unique=True)
        else:
            rows = None
        selector = bits = None
        if rows is not None and self.ann.structure is not None and len(rows) > EXACT_SUBSET:
            mask = np.zeros(self.log.rows, dtype=bool)
            mask[rows] = True
            bits = np.packbits(mask, bitorder="little")
            selector = faiss.IDSelectorBitmap(self.log.rows, faiss.swig_ptr(bits))
        if len(self._filters) >= CACHED_FILTERS:
            self._filters.clear()
        # The selector reads ``bits`` in place: they are cached (kept alive) beside it.
        self._filters[filter] = (rows, selector, bits)
        return rows, selector

    @_locked
    def delete(self, ids) -> int:
        self._check_writable()
        with self.catalog.full():
            keys = self.catalog.delete(ids)
        if len(keys):
            self.dirty = True
            self._deleted.append(keys)
            self._deleted_rows += len(keys)
            self._filters.clear()
        return len(keys)

    def _dead(self) -> np.ndarray:
        """The sorted tombstoned rows, with the deletes since the last call merged in (once)."""
        if self._deleted:
            self.dead = merge_dead(self.dead, self._deleted)
            self._deleted, self._deleted_rows = [], 0
        return self.dead

    def _dead_count(self) -> int:
        # Deleted keys are distinct and were live: counted without merging.
        return len(self.dead) + self._deleted_rows

    @_locked
    def compact(self) -> int:
        """Rewrite the vectors without deleted rows (keys renumbered, one commit); how many
        rows went. A writer's close does it too once deletes pass a third of the rows."""
        self._check_writable()
        return compaction.compact(self)

    @_locked
    def ids(self) -> set[str]:
        return self.catalog.ids()

    @_locked
    def get(self, ids) -> dict[str, dict[str, Any]]:
        return self.catalog.get(ids)

    @_locked
    def present(self, ids) -> set[str]:
        return self.catalog.present(ids)

    @_locked
    def save(self) -> None:
        """Make the new rows durable (one fsync of the log, and of a scan copy), then one SQLite
        commit: rows, chunk checksum, state. ``index.json`` first when it changed."""
        self._check_writable()
        if not self.dirty:
            return
        if self.copy is not None:  # int8's ranges, fitted on the first rows: before its codes
            self.info["storage"] = self.copy.spec
        if self.info != self.saved_info:
            write_info(self.path, self.info)
            self.saved_info = dict(self.info)
        if self.copy is not None:
            self.copy.codes.pending()
        with self.catalog.full():
            self._commit(self.log.pending())
        self.log.mark_committed()
        if self.copy is not None:
            self.copy.codes.mark_committed()
        self.dirty = False
        self._after_commit()

    def _commit(self, chunk: tuple | None) -> None:
        items = self.log.rows - self._dead_count()
        self.catalog.commit(chunk, rows=self.log.rows, items=items, fields=self.fields)

    def _after_commit(self) -> None:
        self.ann.save()  # only once it covers twice the rows of the saved cache

    @_locked
    def tuning_queries(self, queries: np.ndarray, **described: Any) -> None:
        self._check_writable()
        queries = self._check_search(queries, 1)
        self._tuning = (queries, {"source": "given", **described})

    @_locked
    def close(self) -> None:
        if self.closed:
            return
        try:
            if self.writable:
                self.save()
                if compaction.due(self.log.rows, self._dead_count()):
                    compaction.compact(self)
                with self.catalog.full():
                    self.catalog.index_filters()
                self.ann.finish(self.log.view(), self.info, *self._tuning)
                if self.info != self.saved_info:  # the recorded tuning, or auto's choice
                    write_info(self.path, self.info)
        finally:
            self._release()

    def discard(self) -> None:
        with self.lock:
            self._release()

    def _release(self) -> None:
        if (catalog := getattr(self, "catalog", None)) is not None:
            catalog.close()  # a writer's uncommitted rows roll back
        for rows in (
            getattr(self, "log", None),
            getattr(getattr(self, "copy", None), "codes", None),
        ):
            if rows is not None:
                rows.close()
        if self.writer is not None:
            self.writer.release()
        self.closed = True

    @_locked
    def __len__(self) -> int:
        return self.log.rows - self._dead_count()


def merge_dead(dead: np.ndarray, deleted: list[np.ndarray]) -> np.ndarray:
    """``dead`` (sorted) with the keys of later deletes (each distinct and not yet dead)."""
    merged = np.concatenate([dead, *deleted])
    merged.sort(kind="stable")
    return merged
