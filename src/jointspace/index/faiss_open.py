"""Opening a FAISS index folder: refuse what is not an index, create one, or load and verify one.

SQLite records the committed row count of ``vectors.f32`` and a SHA-256 per appended chunk; an
open refuses a log that is shorter or whose chunks differ, and checks the item count against
the rows and tombstones. Rows a killed writer appended past the commit are ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.atomic import disk_full_translated
from jointspace.errors import ArtifactError
from jointspace.index import compaction
from jointspace.index.catalog import Catalog
from jointspace.index.errors import (
    DamagedIndexError,
    IndexLockedError,
    IndexMismatchError,
    IndexNotFoundError,
    NotAnIndexError,
)
from jointspace.index.faiss_ann import Ann
from jointspace.index.faiss_files import (
    DATA_FILES,
    FORMAT,
    GENERATION,
    INFO,
    META,
    OLD_FILES,
    VECTORS,
    generation_file,
    own_file,
    read_info,
    write_info,
)
from jointspace.index.scan_copy import ScanCopy, check_storage, open_copy
from jointspace.index.vector_log import VectorLog


class FaissFolder:
    """The opening half of ``FaissIndex``: sets ``info``, ``catalog``, ``log``, ``ann``…"""

    # Set by ``FaissIndex.__init__`` (the first three) and by the opening methods below.
    path: Path
    uri: str
    writable: bool
    info: dict[str, Any]
    saved_info: dict[str, Any]
    dim: int
    kind: str
    fields: set[str]
    catalog: Catalog
    log: VectorLog
    ann: Ann
    copy: ScanCopy | None  # storage=fp16|int8: the exact scan's copy of the log
    asked_storage: str | None
    dirty: bool
    dead: np.ndarray  # tombstoned rows, sorted
    generation: int  # which log files SQLite names (a compaction writes the next ones)

    def _missing(self) -> None:
        if any((self.path / name).exists() for name in (VECTORS, META, *OLD_FILES)):
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
        old = any(name in entries for name in (VECTORS, *OLD_FILES))
        if old or (META in entries and self._has_rows()):
            raise DamagedIndexError(self.uri, f"{self.path / INFO} is missing")

    def _has_rows(self) -> bool:
        # A meta.sqlite with no rows is what a build killed while creating the index leaves.
        try:
            catalog = Catalog(self.path / META, writable=False)
            with contextlib.closing(catalog.db):
                return catalog.count() > 0
        except sqlite3.DatabaseError:
            return True

    def _open_for_writing(self, dim, kind: str, force: bool, info: dict) -> None:
        exists = (self.path / INFO).is_file()  # again: another writer may just have made it
        for name in os.listdir(self.path):  # temp files of a killed writer: only ours, locked
            if own_file(name) and name.endswith(".tmp"):
                (self.path / name).unlink(missing_ok=True)
        if force or not exists:
            for name in os.listdir(self.path):
                if name in DATA_FILES or GENERATION.fullmatch(name):
                    (self.path / name).unlink(missing_ok=True)
            self._create(dim, kind, info)
        else:
            self._open(dim, info)
            compaction.remove_stale(self.path, self.generation)  # a killed compaction's files

    def _create(self, dim: int, kind: str, info: dict) -> None:
        self.info = {"dim": dim, "kind": kind, "backend": "faiss", "format": FORMAT, **info}
        if self.asked_storage not in (None, "fp32"):
            self.info["storage"] = {"name": self.asked_storage}
        self.dim, self.kind, self.fields = dim, kind, set()
        self.dead, self.generation = np.empty(0, dtype=np.int64), 0
        self.catalog = Catalog(self.path / META, writable=True)
        with disk_full_translated(self.path / META):
            self.catalog.create()
        self.log = VectorLog(self.path / VECTORS, dim, 0, writable=True)
        self.copy = open_copy(self.path, self.info, self.log, writable=True)
        self.ann = Ann(self.path, _structure_kind(self.info), dim)
        self.ann.load(self.log.view())
        write_info(self.path, self.info)  # last: index.json marks a complete index
        self.saved_info = dict(self.info)

    def _open(self, dim: int | None, info: dict) -> None:
        self.info = read_info(self.path, self.uri)
        if dim is not None and dim != self.info["dim"]:
            raise IndexMismatchError(f"{self.uri} holds {self.info['dim']}-d vectors, not {dim}-d")
        check_storage(self.info, self.asked_storage, self.uri)
        self.saved_info = dict(self.info)
        self.dim, self.kind = self.info["dim"], self.info["kind"]
        if not (self.path / META).is_file():
            state = "is not a file" if (self.path / META).exists() else "is missing"
            raise DamagedIndexError(self.uri, f"{self.path / META} {state}")
        try:
            self.catalog = Catalog(self.path / META, self.writable)
            for attempt in range(3):
                snapshot = self.catalog.snapshot()
                try:
                    return self._load(*snapshot)
                except (DamagedIndexError, FileNotFoundError):
                    # A compaction committed (and removed the files read) since the snapshot:
                    # read the new generation. Anything else is damage.
                    then = int(snapshot[0].get("generation", 0))
                    if self.writable or attempt == 2 or self.catalog.generation() == then:
                        raise
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

    def _load(self, state: dict, count: int, chunks: list, dead: np.ndarray) -> None:
        try:
            rows, items = int(state["rows"]), int(state["items"])
            self.fields = set(json.loads(state["fields"]))
            self.generation = int(state.get("generation", 0))
        except (KeyError, ValueError, TypeError):
            raise DamagedIndexError(self.uri, f"{self.path / META} lacks its state") from None
        if items != count or rows - len(dead) != count:
            raise DamagedIndexError(
                self.uri, f"{self.path / META} lists {count} items but recorded {items}"
            )
        starts = [start for start, _, _ in chunks]
        if starts != [0, *(start + n for start, n, _ in chunks)][: len(chunks)] or rows != sum(
            n for _, n, _ in chunks
        ):
            raise DamagedIndexError(self.uri, f"{self.path / META} has gaps in its chunk list")
        path = self.path / generation_file(VECTORS, self.generation)
        log = VectorLog(path, self.dim, rows, writable=False)
        log.check(chunks, self.uri, META)
        if self.writable:  # checked first: a refused writer changes nothing
            log = VectorLog(path, self.dim, rows, writable=True)
        self.log, self.dead = log, dead
        self.copy = open_copy(self.path, self.info, log, self.writable, self.generation)
        if self.copy is not None:
            self.copy.codes.view()  # mapped now: still readable if a compaction removes it
        if self.copy is not None and self.copy.spec != self.info.get("storage"):
            self.info["storage"] = self.copy.spec  # int8 fitted while repairing its codes
            self.dirty = True  # so a close saves the ranges those codes need
        self.ann = Ann(self.path, _structure_kind(self.info), self.dim)
        self.ann.load(self.log.view())
        self.ann.changed = False  # catching up from the log is no change worth tuning for


def _structure_kind(info: dict) -> str:
    """The structure searched: ``auto`` picks one at a writer's close (exact until then)."""
    return info.get("auto_kind", "flat") if info["kind"] == "auto" else info["kind"]
