"""``meta.sqlite``: items (key = row of the vector log), tombstones, and the committed state.

Fields users filter on (``split``, ``label``, ``meta_*``) get their own typed column, made the
first time one is seen. Their SQL indexes are deferred: a writer builds them all at once (far
cheaper than per insert) when it closes or first filters, and keeps them up after that.
Changes stay in one open transaction (kept in memory) until ``commit``: the commit point.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from urllib.parse import quote

import numpy as np

from jointspace.errors import DiskFullError, InputError
from jointspace.index.filters import Condition, Junction, to_sql

CHUNK = 500  # SQLite caps the number of ? in one statement: query in chunks
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS items (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
    "meta TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tombstones (key INTEGER PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS chunks (start INTEGER PRIMARY KEY, rows INTEGER NOT NULL, "
    "sha256 TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT)",
)


def typed_field(name: str) -> bool:
    """Whether ``name`` gets its own indexed column."""
    return name in ("split", "label") or name.startswith("meta_")


def column_of(name: str) -> str:
    return f'"f_{name}"'  # field names match [A-Za-z_][A-Za-z0-9_]*: safe inside quotes


def _cell(value):
    # Untyped columns keep each value's type, as json_extract does: 1 never equals "1".
    if type(value) is str or value is None:  # the common case first: this runs per item
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return float(value)
    if isinstance(value, str | int | float):
        return value
    return json.dumps(value)


def _plain(values: list) -> bool:
    """Whether a typed column stores every value exactly (str, or int within SQLite's range)."""
    kinds = set(map(type, values))
    if not kinds <= {str, int}:
        return False
    return int not in kinds or all(-(2**63) <= v < 2**63 for v in values if type(v) is int)


def _meta_texts(metadata: Sequence[dict], names: set[str], plain: set[str]) -> Iterator[str]:
    """Each item's metadata as JSON, less the fields its typed columns hold exactly."""
    if names <= plain:  # the common case at scale: every field has its column
        return itertools.repeat("{}", len(metadata))
    encode = _encoder()
    if not plain:
        return map(encode, metadata)
    return (encode({k: v for k, v in m.items() if k not in plain}) for m in metadata)


def _meta_columns(typed: list[str]) -> str:
    return ", ".join(["meta", *map(column_of, typed)])


def _metadata(row: tuple, typed: list[str]) -> dict:
    """An item's metadata: its JSON plus the typed columns it left out (``_plain`` values).

    Folders written before typed values left the JSON hold them in both: the JSON wins."""
    meta = json.loads(row[0])
    for name, value in zip(typed, row[1:], strict=True):
        if value is not None and name not in meta:
            meta[name] = value
    return meta


def _unserialisable(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encoder() -> Callable[[dict], str]:
    """``json.dumps`` for one batch of metadata, without its per-call set-up (3x faster per item:
    at a million items that set-up was a large part of a build)."""
    if c_make_encoder is None:  # a Python without the C accelerator
        return json.JSONEncoder().encode
    one = c_make_encoder(
        {}, _unserialisable, encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    return lambda value: "".join(one(value, 0))


class Catalog:
    """The SQLite side of a FAISS index folder; a reader's connection is read-only."""

    def __init__(self, path: Path, writable: bool):
        self.path = path
        if writable:
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            # Keep uncommitted rows in memory: the file then changes only at a commit, so a
            # writer killed between saves leaves no journal a reader would have to roll back.
            self.db.execute("PRAGMA cache_spill = OFF")
            # The id index takes inserts all over: keep its pages cached between commits.
            self.db.execute("PRAGMA cache_size = -65536")
        else:  # mode=ro: SQLite itself refuses any write
            uri = f"file:{quote(str(path.resolve()))}?mode=ro"
            self.db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        self.columns: set[str] = set()
        self.indexed = False  # the typed columns' SQL indexes exist (and are kept up)

    def create(self) -> None:
        # 16 KiB pages (before any table exists): ~10 % less CPU per insert than 4 KiB at 1M.
        self.db.execute("PRAGMA page_size = 16384")
        with self.full():
            self.begin()
            for statement in SCHEMA:
                self.db.execute(statement)
            self.commit(None, rows=0, items=0, fields=set())

    def snapshot(self) -> tuple[dict, int, list, np.ndarray]:
        """State, item count, chunks and tombstones, all from one snapshot."""
        self.db.execute("BEGIN")
        try:
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master")}
            if missing := {"items", "tombstones", "chunks", "state"} - tables:
                raise sqlite3.DatabaseError(f"no {sorted(missing)[0]} table")
            state = dict(self.db.execute("SELECT name, value FROM state"))
            count = self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            sql = "SELECT start, rows, sha256 FROM chunks ORDER BY start"
            chunks = self.db.execute(sql).fetchall()
            dead = self.keys("SELECT key FROM tombstones ORDER BY key")
            info = self.db.execute("PRAGMA table_info(items)").fetchall()
            sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'items'"
            indexes = {r[0] for r in self.db.execute(sql)}
        finally:
            self.db.execute("COMMIT")
        self.columns = {r[1][2:] for r in info if r[1].startswith("f_")}
        self.indexed = bool(self.columns) and {f"items_f_{c}" for c in self.columns} <= indexes
        return state, count, chunks, dead

    def begin(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN")

    def insert(self, start: int, ids: Sequence[str], metadata: Sequence[dict]) -> None:
        """Rows with keys ``start, start+1, …``; refuses ids already present (in ``adding``)."""
        names = set().union(*metadata)
        for name in sorted({k for k in names if typed_field(k)} - self.columns):
            self.db.execute(f"ALTER TABLE items ADD COLUMN {column_of(name)}")
            if self.indexed:
                self._index(name)
            self.columns.add(name)
        typed = sorted(self.columns)
        columns = ", ".join(["key", "id", "meta", *map(column_of, typed)])
        marks = ", ".join("?" * (3 + len(typed)))
        # Column by column: one pass per field rather than Python work per item and field.
        cells, plain = [], set()
        for name in typed:
            values = [m.get(name) for m in metadata]
            if _plain(values) and name in names:
                plain.add(name)  # the column alone keeps these values: not repeated in meta
                cells.append(values)
            else:
                cells.append([_cell(v) for v in values])
        keys = range(start, start + len(ids))
        rows = zip(keys, ids, _meta_texts(metadata, names, plain), *cells, strict=True)
        try:
            self.db.executemany(f"INSERT INTO items ({columns}) VALUES ({marks})", rows)
        except sqlite3.IntegrityError:  # the rows before the duplicate went in: not ours
            self.db.execute("DELETE FROM items WHERE key >= ?", (start,))
            present = sorted(self.present(ids))
            raise InputError(f"ids already in the index: {present[:5]}") from None

    def index_filters(self) -> None:
        """A writer's typed columns get their SQL indexes (once; kept up by later inserts).

        Inside the open transaction when there is one (committed with the next save), else
        committed here. Readers never call it: without the indexes, a filter scans the column."""
        if self.indexed:
            return
        pending = self.db.in_transaction
        self.begin()
        for name in sorted(self.columns):
            self._index(name)
        if not pending:
            self.db.execute("COMMIT")
        self.indexed = True

    def _index(self, name: str) -> None:
        self.db.execute(f'CREATE INDEX IF NOT EXISTS "items_f_{name}" ON items ({column_of(name)})')

    @contextlib.contextmanager
    def adding(self, start: int) -> Iterator[None]:
        """Around one add whose rows get keys ``start, …``: if anything in it fails, none stay.

        Undone by deleting those keys, not by a savepoint (which copies the original of every
        page the add touches: ~15 % of a build's time). Columns it added stay, empty."""
        self.begin()
        try:
            yield
        except BaseException:
            self.db.execute("DELETE FROM items WHERE key >= ?", (start,))
            raise

    def delete(self, ids: Sequence[str]) -> np.ndarray:
        """Remove the given ids' rows and tombstone their keys; the keys removed."""
        keys = np.array(
            [r[0] for r in self.select("SELECT key FROM items WHERE id IN ({})", ids)],
            dtype=np.int64,
        )
        if len(keys):
            self.begin()
            self.select("DELETE FROM items WHERE id IN ({})", ids)
            self.db.executemany(
                "INSERT INTO tombstones (key) VALUES (?)", [(int(k),) for k in keys]
            )
        return np.sort(keys)

    def present(self, ids: Sequence[str]) -> set[str]:
        return {r[0] for r in self.select("SELECT id FROM items WHERE id IN ({})", ids)}

    def get(self, ids: Sequence[str]) -> dict[str, dict]:
        typed = sorted(self.columns)
        sql = f"SELECT id, {_meta_columns(typed)} FROM items WHERE id IN ({{}})"
        return {row[0]: _metadata(row[1:], typed) for row in self.select(sql, ids)}

    def by_key(self, keys: Sequence[int]) -> dict[int, tuple[str, dict]]:
        typed = sorted(self.columns)
        sql = f"SELECT key, id, {_meta_columns(typed)} FROM items WHERE key IN ({{}})"
        return {row[0]: (row[1], _metadata(row[2:], typed)) for row in self.select(sql, keys)}

    def ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT id FROM items")}

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def allowed(self, expr: Condition | Junction) -> np.ndarray:
        """The sorted keys of the items ``expr`` matches."""
        where, params = to_sql(expr, typed=self.columns)
        return self.keys(f"SELECT key FROM items WHERE {where} ORDER BY key", params)

    def keys(self, sql: str, params: Sequence = ()) -> np.ndarray:
        cursor = self.db.execute(sql, params)
        return np.fromiter((r[0] for r in cursor), dtype=np.int64)

    def select(self, sql: str, values: Sequence) -> list[tuple]:
        values, rows = [v if isinstance(v, str) else int(v) for v in values], []
        for start in range(0, len(values), CHUNK):
            chunk = values[start : start + CHUNK]
            rows += self.db.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall()
        return rows

    def commit(self, chunk: tuple | None, *, rows: int, items: int, fields: set[str]) -> None:
        """Record the log's new chunk and the state, then commit: the index's commit point."""
        self.begin()
        if chunk is not None:
            self.db.execute("INSERT INTO chunks (start, rows, sha256) VALUES (?, ?, ?)", chunk)
        self.record_state({"rows": rows, "items": items, "fields": json.dumps(sorted(fields))})
        self.db.execute("COMMIT")

    def generation(self) -> int:
        """Which generation of the log files the committed state names (0: never compacted)."""
        found = self.db.execute("SELECT value FROM state WHERE name = 'generation'").fetchone()
        return int(found[0]) if found else 0

    def renumber(self, live: np.ndarray, generation: int) -> None:
        """Compaction, up to its commit: item keys ``live`` (sorted) become ``0, 1, …``, the
        tombstones and chunk records go, and the state names the new ``generation``."""
        self.begin()
        # Ascending: key live[i] >= i, and every key below i is already moved: never a clash.
        moves = ((i, int(key)) for i, key in enumerate(live.tolist()) if key != i)
        self.db.executemany("UPDATE items SET key = ? WHERE key = ?", moves)
        self.db.execute("DELETE FROM tombstones")
        self.db.execute("DELETE FROM chunks")
        self.record_state({"generation": generation})

    def record_state(self, state: dict) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)",
            [(k, str(v)) for k, v in state.items()],
        )

    def close(self) -> None:
        self.db.close()  # a writer's uncommitted rows roll back

    @contextlib.contextmanager
    def full(self) -> Iterator[None]:
        """SQLite's "database or disk is full" as one line naming the file."""
        try:
            yield
        except sqlite3.OperationalError as err:
            if "full" not in str(err):
                raise
            raise DiskFullError(f"no space left on device writing {self.path}") from None
