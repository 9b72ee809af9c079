"""Embedded FAISS index: vectors in ``index.faiss``, ids and metadata in ``meta.sqlite``.

Opened for reading (``mode="r"``) it writes nothing, so a read-only folder can be searched. A
writer (``mode="w"``) holds the folder's lock and saves only what it changed. SQLite is the
truth and records the checksum of the vector file it belongs with (see ``faiss_files``).
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from jointspace.errors import ArtifactError, InputError, JointspaceError
from jointspace.index.base import IndexHit, VectorIndex
from jointspace.index.errors import (
    IndexUriError,
    NotAnIndexError,
)
from jointspace.index.faiss_files import (
    INFO,
    KINDS,
    META,
    WriterLock,
    publish_vectors,
    write_info,
    write_vectors,
)
from jointspace.index.faiss_kinds import TRAIN_MIN, train_ivfpq
from jointspace.index.faiss_open import STATE, FaissFolder, sqlite_full
from jointspace.index.filters import check_fields, parse_filter, to_sql

CHUNK = 500


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


class FaissIndex(FaissFolder, VectorIndex):
    """Inner-product search over string ids: exact ``flat``, or approximate ``hnsw``/``ivfpq``.

    ``ivfpq`` (inverted lists + product-quantised codes) stores compressed vectors; it searches
    exactly until ``train_min`` vectors exist, then trains on them and switches over.
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
        # Web servers call from a thread pool: one connection, serialised by a lock.
        self.lock = threading.RLock()
        self.writer: WriterLock | None = None
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

    @_locked
    def add(self, ids, vectors, metadata=None) -> None:
        self._check_writable()
        vectors = self._check_add(ids, vectors, metadata)
        if present := self.get(ids):
            raise InputError(f"ids already in the index: {sorted(present)[:5]}")
        metadata = metadata or [{} for _ in ids]
        rows = [(i, json.dumps(m)) for i, m in zip(ids, metadata, strict=True)]
        fields = self._known_fields() | {key for m in metadata for key in m}
        self.dirty = True
        self.db.executemany("INSERT INTO items (id, meta) VALUES (?, ?)", rows)
        key_of = dict(self._select("SELECT id, key FROM items WHERE id IN ({})", ids))
        self.index.add_with_ids(vectors, np.array([key_of[i] for i in ids], dtype=np.int64))
        self.fields = fields
        if self.kind == "ivfpq" and not self.trained and self.index.ntotal >= self._train_min():
            self.index = train_ivfpq(self.index, self.info)

    @property
    def trained(self) -> bool:
        return isinstance(self.index, faiss.IndexIVF)

    def _train_min(self) -> int:
        return int(self.info.get("train_min", TRAIN_MIN))

    def _select(self, sql: str, values: Sequence) -> list[tuple]:
        # SQLite caps the number of ? in one statement: query in chunks.
        values, rows = list(values), []
        for start in range(0, len(values), CHUNK):
            chunk = values[start : start + CHUNK]
            rows += self.db.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall()
        return rows

    @_locked
    def search(self, queries, k=10, filter=None) -> list[list[IndexHit]]:
        queries = self._check_search(queries, k)
        allowed = None
        if filter:
            expr = parse_filter(filter)
            check_fields(expr, self._known_fields(), filter)
            where, params = to_sql(expr)
            allowed = self._keys(where, params)
            if len(allowed) == 0:
                return [[] for _ in queries]
        # HNSW cannot remove vectors: ask for extra and drop the ids SQLite no longer lists.
        extra = max(0, self.index.ntotal - self._count()) if self.kind == "hnsw" else 0
        fetch = min(k + extra, max(self.index.ntotal, 1))
        selector = None if allowed is None else faiss.IDSelectorBatch(allowed)
        # faiss's stubs omit the keyword arguments its wrappers take (they keep ``sel`` alive).
        search: faiss.SearchParameters | None = None
        if self.trained:
            nprobe = int(self.info.get("nprobe", self.index.nprobe))
            search = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)  # type: ignore[call-arg]
        elif selector is not None:
            search = faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]
        scores, keys = self.index.search(queries, fetch, params=search)
        return [self._hits(s, row, k) for s, row in zip(scores, keys, strict=True)]

    def _hits(self, scores: np.ndarray, keys: np.ndarray, k: int) -> list[IndexHit]:
        found = [int(key) for key in keys if key >= 0]
        rows = {
            key: (i, json.loads(m))
            for key, i, m in self._select(
                "SELECT key, id, meta FROM items WHERE key IN ({})", found
            )
        }
        hits = [
            IndexHit(rows[key][0], float(score), rows[key][1])
            for score, key in zip(scores.tolist(), keys.tolist(), strict=True)
            if key in rows
        ]
        return hits[:k]

    @_locked
    def delete(self, ids) -> int:
        self._check_writable()
        keys = np.array(
            [r[0] for r in self._select("SELECT key FROM items WHERE id IN ({})", ids)],
            dtype=np.int64,
        )
        if len(keys):
            self.dirty = True
            self._select("DELETE FROM items WHERE id IN ({})", ids)
            if self.kind != "hnsw":
                self.index.remove_ids(keys)
        return len(keys)

    @_locked
    def ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT id FROM items")}

    @_locked
    def get(self, ids) -> dict[str, dict[str, Any]]:
        rows = self._select("SELECT id, meta FROM items WHERE id IN ({})", ids)
        return {i: json.loads(m) for i, m in rows}

    @_locked
    def save(self) -> None:
        """Vectors to ``index.faiss.next``, then one commit (rows + their checksum), then rename."""
        self._check_writable()
        if not self.dirty:
            return
        if self.info != self.saved_info:
            write_info(self.path, self.info)
            self.saved_info = dict(self.info)
        sha = write_vectors(self.index, self.path)
        with sqlite_full(self.path / META):
            self.db.execute(STATE)
            self._record_state(sha)
            self.db.commit()
        publish_vectors(self.path)
        self.dirty = False

    def _record_state(self, sha: str) -> None:
        state = {"vectors_sha256": sha, "vectors": self.index.ntotal if sha else 0}
        state["items"] = self._count()
        if self.fields is not None:
            state["fields"] = json.dumps(sorted(self.fields))
        self.db.executemany(
            "INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)",
            [(k, str(v)) for k, v in state.items()],
        )

    @_locked
    def close(self) -> None:
        if self.closed:
            return
        try:
            if self.writable:
                self.save()
        finally:
            self._release()

    def discard(self) -> None:
        with self.lock:
            self._release()

    def _release(self) -> None:
        if (db := getattr(self, "db", None)) is not None:  # None: failed before connecting
            db.close()  # a writer's uncommitted rows roll back
        if self.writer is not None:
            self.writer.release()
        self.closed = True

    @_locked
    def __len__(self) -> int:
        return self._count()
