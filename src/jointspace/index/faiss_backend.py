"""Embedded FAISS index: vectors in ``index.faiss``, ids and metadata in ``meta.sqlite``.

``save`` writes the FAISS file atomically, then commits SQLite: SQLite is the truth, and FAISS
vectors it does not list (a crash between the two) are ignored and dropped on the next open.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from jointspace.atomic import atomic_path
from jointspace.index.base import IndexHit, VectorIndex
from jointspace.index.filters import parse_filter, to_sql

KINDS = ("flat", "hnsw", "ivfpq")
TRAIN_MIN = 2048  # ivfpq stays exact (flat) until it holds this many vectors to train on
CHUNK = 500
INFO, VECTORS, META = "index.json", "index.faiss", "meta.sqlite"


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

    def __init__(self, path: str | Path, dim: int | None = None, kind: str = "flat", **info):
        self.path = Path(path)
        saved = self.path / INFO
        if saved.is_file():
            self.info = json.loads(saved.read_text())
            if dim is not None and dim != self.info["dim"]:
                raise ValueError(f"{self.path} holds {self.info['dim']}-d vectors, not {dim}-d")
            if "nprobe" in info:  # a search-time setting: may change on every open
                self.info["nprobe"] = info["nprobe"]
        elif dim is None:
            raise FileNotFoundError(f"no index at {self.path}; give dim= to create one")
        else:
            if kind not in KINDS:
                raise ValueError(f"faiss index kind must be one of {KINDS}, got {kind!r}")
            self.info = {"dim": dim, "kind": kind, "backend": "faiss", **info}
        self.dim, self.kind = self.info["dim"], self.info["kind"]
        self.path.mkdir(parents=True, exist_ok=True)
        # Web servers call from a thread pool: one connection, serialised by a lock.
        self.db = sqlite3.connect(self.path / META, check_same_thread=False)
        self.lock = threading.RLock()
        self.db.execute(
            # AUTOINCREMENT: a key is never reused, so a stale HNSW vector never names a new item.
            "CREATE TABLE IF NOT EXISTS items "
            "(key INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, meta TEXT)"
        )
        self.index = self._load_vectors()
        self.closed = False
        self._write_info()

    def _load_vectors(self) -> faiss.Index:
        if (self.path / VECTORS).is_file():
            index = faiss.read_index(str(self.path / VECTORS))
            if self.kind != "hnsw":
                saved = faiss.IDSelectorBatch(self._keys())
                index.remove_ids(faiss.IDSelectorNot(saved))
            return index
        base = (
            faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)
            if self.kind == "hnsw"
            else faiss.IndexFlatIP(self.dim)  # ivfpq too, until it has enough to train on
        )
        return faiss.IndexIDMap2(base)

    def _keys(self, where: str = "1", params: Sequence = ()) -> np.ndarray:
        rows = self.db.execute(f"SELECT key FROM items WHERE {where}", params).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def _write_info(self) -> None:
        with atomic_path(self.path / INFO) as tmp:
            tmp.write_text(json.dumps(self.info, indent=2))

    @_locked
    def add(self, ids, vectors, metadata=None) -> None:
        vectors = self._check_add(ids, vectors, metadata)
        if present := self.get(ids):
            raise ValueError(f"ids already in the index: {sorted(present)[:5]}")
        metadata = metadata or [{} for _ in ids]
        rows = [(i, json.dumps(m)) for i, m in zip(ids, metadata, strict=True)]
        self.db.executemany("INSERT INTO items (id, meta) VALUES (?, ?)", rows)
        key_of = dict(self._select("SELECT id, key FROM items WHERE id IN ({})", ids))
        self.index.add_with_ids(vectors, np.array([key_of[i] for i in ids], dtype=np.int64))
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
            where, params = to_sql(parse_filter(filter))
            allowed = self._keys(where, params)
            if len(allowed) == 0:
                return [[] for _ in queries]
        # HNSW cannot remove vectors: ask for extra and drop the ids SQLite no longer lists.
        extra = max(0, self.index.ntotal - self._count()) if self.kind == "hnsw" else 0
        fetch = min(k + extra, max(self.index.ntotal, 1))
        selector = None if allowed is None else faiss.IDSelectorBatch(allowed)
        if self.trained:
            nprobe = int(self.info["nprobe"])
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
        keys = np.array(
            [r[0] for r in self._select("SELECT key FROM items WHERE id IN ({})", ids)],
            dtype=np.int64,
        )
        self._select("DELETE FROM items WHERE id IN ({})", ids)
        if len(keys) and self.kind != "hnsw":
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
        with atomic_path(self.path / VECTORS) as tmp:
            faiss.write_index(self.index, str(tmp))
        self.db.commit()
        self._write_info()

    @_locked
    def close(self) -> None:
        if self.closed:
            return
        self.save()
        self.db.close()
        self.closed = True

    @_locked
    def __len__(self) -> int:
        return self._count()


def train_ivfpq(flat: faiss.IndexIDMap2, info: dict) -> faiss.IndexIVFPQ:
    """Train an IVF-PQ index on every vector of ``flat`` and move them into it, keeping ids."""
    n, dim = flat.ntotal, flat.d
    vectors = flat.index.reconstruct_n(0, n)
    keys = faiss.vector_to_array(flat.id_map).astype(np.int64)
    nlist = int(info.setdefault("nlist", max(1, min(int(4 * np.sqrt(n)), n // 39))))
    m = int(info.setdefault("m", _largest_divisor_at_most(dim, max(1, dim // 2))))
    info.setdefault("nprobe", min(nlist, 16))
    if dim % m:
        raise ValueError(f"ivfpq m={m} must divide the dimension {dim}")
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    # Small corpora train on fewer points than FAISS's rule of thumb: accepted, so stay quiet.
    index.cp.min_points_per_centroid = index.pq.cp.min_points_per_centroid = 1
    index.train(vectors)
    index.add_with_ids(vectors, keys)
    return index


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, limit + 1) if n % d == 0)
