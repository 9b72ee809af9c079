"""Opening a FAISS index folder: refuse what is not an index, create one, or load and verify one.

SQLite records the SHA-256 of the vector file that belongs with its rows; an open accepts only
a file with that checksum (``index.faiss``, or ``index.faiss.next`` when a save was interrupted
after its commit), and checks the counts of vectors and rows against what was recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import faiss
import numpy as np

from jointspace.atomic import disk_full_translated
from jointspace.errors import ArtifactError, DiskFullError
from jointspace.index.errors import (
    DamagedIndexError,
    IndexLockedError,
    IndexMismatchError,
    IndexNotFoundError,
    NotAnIndexError,
)
from jointspace.index.faiss_files import (
    DATA_FILES,
    INFO,
    META,
    NEXT,
    VECTORS,
    own_file,
    publish_vectors,
    read_info,
    read_vectors,
    write_info,
)
from jointspace.index.faiss_kinds import empty_vectors

OPEN_TRIES = 5  # a concurrent writer's commit can move the state while a reader opens
# AUTOINCREMENT: a key is never reused, so a stale HNSW vector never names a new item.
ITEMS = (
    "CREATE TABLE IF NOT EXISTS items "
    "(key INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, meta TEXT)"
)
STATE = "CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT)"


class FaissFolder:
    """The opening half of ``FaissIndex``: sets ``info``, ``db``, ``index`` and ``fields``."""

    # Set by ``FaissIndex.__init__`` (the first three) and by the opening methods below.
    path: Path
    uri: str
    writable: bool
    info: dict[str, Any]
    saved_info: dict[str, Any]
    dim: int
    kind: str
    fields: set[str] | None  # None: an index saved before fields were recorded
    index: Any  # a faiss index; faiss's stubs lack the keyword arguments its wrappers take
    db: sqlite3.Connection

    def _record_state(self, sha: str) -> None:
        raise NotImplementedError  # FaissIndex records the state of its vectors

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
        for name in os.listdir(self.path):  # temp files of a killed writer: only ours, locked
            if own_file(name) and name.endswith(".tmp"):
                (self.path / name).unlink(missing_ok=True)
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
        with disk_full_translated(self.path / META), sqlite_full(self.path / META):
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
            state = "is not a file" if (self.path / META).exists() else "is missing"
            raise DamagedIndexError(self.uri, f"{self.path / META} {state}")
        try:
            self.db = self._connect()
            self._load()
        except sqlite3.OperationalError as err:
            if "locked" in str(err):  # a writer's commit took longer than SQLite's 5 s wait
                raise IndexLockedError(
                    f"index {self.uri}: {self.path / META} is busy with a commit; retry"
                ) from None
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
                    if (found := read_vectors(self.path / source, sha)) is not None:
                        index = found
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

    def _count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]


def _read_only(path: Path) -> str:
    return f"file:{quote(str(path.resolve()))}?mode=ro"


@contextlib.contextmanager
def sqlite_full(path: Path) -> Iterator[None]:
    """SQLite's "database or disk is full" as one line naming the file."""
    try:
        yield
    except sqlite3.OperationalError as err:
        if "full" not in str(err):
            raise
        raise DiskFullError(f"no space left on device writing {path}") from None
