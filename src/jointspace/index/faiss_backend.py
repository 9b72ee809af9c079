"""Embedded FAISS index: vectors in ``index.faiss``, ids and metadata in ``meta.sqlite``.

Opened for reading (``mode="r"``) it writes nothing, so a read-only folder can be searched. A
writer (``mode="w"``) holds the folder's lock and saves only what it changed. SQLite is the
truth and records the checksum of the vector file it belongs with (see ``faiss_files``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import faiss
import numpy as np

from jointspace.errors import ArtifactError, DiskFullError
from jointspace.index.base import IndexHit, VectorIndex
from jointspace.index.errors import (
    DamagedIndexError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexUriError,
    NotAnIndexError,
)
from jointspace.index.faiss_files import (
    DATA_FILES,
    INFO,
    KINDS,
    META,
    NEXT,
    VECTORS,
    WriterLock,
    disk_full_named,
    own_file,
    publish_vectors,
    read_info,
    read_vectors,
    write_info,
    write_vectors,
)
from jointspace.index.faiss_kinds import TRAIN_MIN, empty_vectors, train_ivfpq
from jointspace.index.filters import check_fields, parse_filter, to_sql

CHUNK = 500
OPEN_TRIES = 5  # a concurrent writer's commit can move the state while a reader opens
# AUTOINCREMENT: a key is never reused, so a stale HNSW vector never names a new item.
ITEMS = (
    "CREATE TABLE IF NOT EXISTS items "
    "(key INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, meta TEXT)"
)
STATE = "CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT)"


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


class FaissIndex(VectorIndex):
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
        self.lock, self.writer, self.db = threading.RLock(), None, None
        if self.path.exists() and not self.path.is_dir():
            raise NotAnIndexError(f"index {self.uri}: {self.path} is a file, not an index folder")
        if not self.writable:
            if not (self.path / INFO).is_file():
                self._missing()
            self._guarded(self._open, dim, info)
            return
        if force and dim is None:
            raise IndexUriError(f"index {self.uri}: rebuilding (force) needs dim=")
        if not (self.path / INFO).is_file() and not force:
            if dim is None:
                self._missing()
            self._check_new_folder()
        self.path.mkdir(parents=True, exist_ok=True)
        self.writer = WriterLock(self.path, self.uri)
        self._guarded(self._open_for_writing, dim, kind, force, info)

    def _guarded(self, method, *args) -> None:
        try:
            method(*args)
        except BaseException:
            self._release()
            raise

    def _missing(self) -> None:
        if any((self.path / name).exists() for name in (VECTORS, NEXT, META)):
            raise DamagedIndexError(self.uri, f"{self.path / INFO} is missing")
        raise IndexNotFoundError(
            f"no index at {self.uri}: build one with "
            f"`jointspace index build MODEL_DIR --data DATA --index {self.uri}`"
        )

    def _check_new_folder(self) -> None:
        """Refuse a folder of other files, or index files without ``index.json`` (damaged)."""
        if not self.path.is_dir():
            return
        entries = sorted(os.listdir(self.path))
        if foreign := [e for e in entries if not own_file(e)]:
            shown = ", ".join(foreign[:3]) + (", …" if len(foreign) > 3 else "")
            raise NotAnIndexError(
                f"{self.path} exists and is not a jointspace index (it holds {shown}): "
                "choose a new folder, or pass --force to build the index inside it"
            )
        if VECTORS in entries or NEXT in entries or (META in entries and self._has_rows()):
            raise DamagedIndexError(self.uri, f"{self.path / INFO} is missing")

    def _has_rows(self) -> bool:
        # A meta.sqlite with no rows is what a build killed while creating the index leaves.
        try:
            with contextlib.closing(sqlite3.connect(_read_only(self.path / META), uri=True)) as db:
                return db.execute("SELECT COUNT(*) FROM items").fetchone()[0] > 0
        except sqlite3.DatabaseError:
            return True

    def _open_for_writing(self, dim, kind: str, force: bool, info: dict) -> None:
        exists = (self.path / INFO).is_file()  # again: another writer may just have made it
        if force or not exists:
            for name in DATA_FILES:
                (self.path / name).unlink(missing_ok=True)
            self._create(dim, kind, info)
        else:
            self._open(dim, info)

    def _create(self, dim: int, kind: str, info: dict) -> None:
        self.info = {"dim": dim, "kind": kind, "backend": "faiss", **info}
        self.dim, self.kind, self.fields = dim, kind, set()
        self.index = empty_vectors(dim, kind)
        self.db = self._connect()
        with disk_full_named(self.path / META), _sqlite_full(self.path / META):
            self.db.execute(ITEMS)
            self.db.execute(STATE)
            self._record_state("")
            self.db.commit()
        write_info(self.path, self.info)  # last: index.json marks a complete index
        self.saved_info = dict(self.info)

    def _open(self, dim: int | None, info: dict) -> None:
        self.info = read_info(self.path, self.uri)
        if dim is not None and dim != self.info["dim"]:
            raise IndexMismatchError(f"{self.uri} holds {self.info['dim']}-d vectors, not {dim}-d")
        self.saved_info = dict(self.info)
        if "nprobe" in info:  # a search-time setting: may change on every open, never saved
            self.info["nprobe"] = info["nprobe"]
        self.dim, self.kind = self.info["dim"], self.info["kind"]
        if not (self.path / META).is_file():
            raise DamagedIndexError(self.uri, f"{self.path / META} is missing")
        try:
            self.db = self._connect()
            self._load()
        except sqlite3.OperationalError as err:
            if "readonly" not in str(err):
                raise DamagedIndexError(self.uri, f"{self.path / META}: {err}") from None
            raise ArtifactError(
                f"index {self.uri}: {self.path / META} holds the unfinished commit of a killed "
                "writer; rerun `jointspace index build` on it (in a writable folder) to recover"
            ) from None
        except sqlite3.DatabaseError as err:
            problem = f"{self.path / META} cannot be read ({err})"
            raise DamagedIndexError(self.uri, problem) from None

    def _connect(self) -> sqlite3.Connection:
        path = self.path / META
        if not self.writable:  # mode=ro: SQLite itself refuses any write
            return sqlite3.connect(_read_only(path), uri=True, check_same_thread=False)
        db = sqlite3.connect(path, check_same_thread=False)
        # Keep uncommitted rows in memory: the file then changes only at a commit, so a
        # writer killed between saves leaves no journal a reader would have to roll back.
        db.execute("PRAGMA cache_spill = OFF")
        return db

    def _snapshot(self) -> tuple[dict | None, int]:
        self.db.execute("BEGIN")  # state and rows from one snapshot
        try:
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master")}
            if "items" not in tables:
                raise DamagedIndexError(self.uri, f"{self.path / META} has no items table")
            if "state" not in tables:
                return None, self._count()
            return dict(self.db.execute("SELECT name, value FROM state")), self._count()
        finally:
            self.db.execute("COMMIT")

    def _load(self) -> None:
        for _ in range(OPEN_TRIES):
            state, count = self._snapshot()
            if state is None:  # an index saved before checksums were recorded
                return self._load_unchecked(count)
            sha = state.get("vectors_sha256", "")
            index, source = empty_vectors(self.dim, self.kind), None
            if sha:
                for source in (VECTORS, NEXT):
                    if (index := read_vectors(self.path / source, sha)) is not None:
                        break
                else:
                    if self._snapshot() != (state, count):
                        continue  # a writer committed while we read: read the new state
                    exists = (self.path / VECTORS).exists()
                    raise DamagedIndexError(
                        self.uri,
                        f"{self.path / VECTORS} does not match {META} (its checksum differs: "
                        "truncated, replaced or edited)"
                        if exists
                        else f"{self.path / VECTORS} is missing",
                    )
            self._check_counts(index, count, int(state.get("items", -1)))
            self.index, self.fields = index, self._recorded_fields(state)
            if self.writable and source == NEXT:
                publish_vectors(self.path)  # finish the save a crash interrupted
            return None
        raise DamagedIndexError(self.uri, "it kept changing while being opened")

    def _check_counts(self, index: faiss.Index, count: int, recorded: int) -> None:
        if recorded != count:
            raise DamagedIndexError(
                self.uri, f"{self.path / META} lists {count} items but recorded {recorded}"
            )
        # HNSW cannot remove vectors: it may hold more than SQLite lists, never fewer.
        if index.ntotal < count or (self.kind != "hnsw" and index.ntotal != count):
            raise DamagedIndexError(
                self.uri,
                f"{self.path / VECTORS} holds {index.ntotal} vectors for the {count} items "
                f"of {META}",
            )

    def _load_unchecked(self, count: int) -> None:
        try:
            index = read_vectors(self.path / VECTORS, None)
        except (RuntimeError, MemoryError):
            raise DamagedIndexError(self.uri, f"{self.path / VECTORS} cannot be read") from None
        if index is None:
            index = empty_vectors(self.dim, self.kind)
        elif self.kind != "hnsw":  # vectors of a save SQLite never committed
            index.remove_ids(faiss.IDSelectorNot(faiss.IDSelectorBatch(self._keys())))
        self._check_counts(index, count, count)
        self.index, self.fields = index, None

    @staticmethod
    def _recorded_fields(state: dict) -> set[str] | None:
        return set(json.loads(state["fields"])) if "fields" in state else None

    def _known_fields(self) -> set[str]:
        if self.fields is None:  # not recorded: read them once
            sql = "SELECT DISTINCT j.key FROM items, json_each(items.meta) AS j"
            self.fields = {r[0] for r in self.db.execute(sql)}
        return self.fields

    def _keys(self, where: str = "1", params: Sequence = ()) -> np.ndarray:
        rows = self.db.execute(f"SELECT key FROM items WHERE {where}", params).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    @_locked
    def add(self, ids, vectors, metadata=None) -> None:
        self._check_writable()
        vectors = self._check_add(ids, vectors, metadata)
        if present := self.get(ids):
            raise ValueError(f"ids already in the index: {sorted(present)[:5]}")
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
        if self.trained:
            nprobe = int(self.info.get("nprobe", self.index.nprobe))
            params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
        else:
            params = None if selector is None else faiss.SearchParameters(sel=selector)
        scores, keys = self.index.search(queries, fetch, params=params)
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

    def _count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]

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
        with _sqlite_full(self.path / META):
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

    def _release(self) -> None:
        if self.db is not None:
            self.db.close()  # a writer's uncommitted rows roll back
        if self.writer is not None:
            self.writer.release()
        self.closed = True

    @_locked
    def __len__(self) -> int:
        return self._count()


def _read_only(path: Path) -> str:
    return f"file:{quote(str(path.resolve()))}?mode=ro"


@contextlib.contextmanager
def _sqlite_full(path: Path) -> Iterator[None]:
    """SQLite's "database or disk is full" as one line naming the file."""
    try:
        yield
    except sqlite3.OperationalError as err:
        if "full" not in str(err):
            raise
        raise DiskFullError(f"no space left on device writing {path}") from None
