"""Milvus through pymilvus: a ``.db`` path runs embedded Milvus Lite, ``http://host:19530`` a
server or cluster, with the same code. Metadata lives in Milvus' dynamic fields."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from jointspace.errors import InputError, MissingPackageError
from jointspace.index.base import IndexHit, VectorIndex
from jointspace.index.errors import (
    BackendError,
    IndexMismatchError,
    IndexNotFoundError,
    NotAnIndexError,
)
from jointspace.index.filters import check_fields, parse_filter, to_milvus

RESERVED = ("id", "vector")
MAX_ID_LENGTH = 512
INFO_PROPERTY = "jointspace.info"  # a collection property: survives reopening, unlike descriptions
LITE_FILES = {"LOCK", "collections", "databases", ".database-staging"}
# Every Milvus failure reaches the user as one BackendError line; pymilvus, Milvus Lite and
# Milvus Lite's in-process gRPC server would also log it, with a traceback, to stderr.
for _name in ("pymilvus", "milvus_lite", "grpc._server"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


class MilvusIndex(VectorIndex):
    """One Milvus collection: VARCHAR primary key ``id``, FLOAT_VECTOR ``vector``, inner product."""

    def __init__(
        self,
        target: str,
        collection: str = "jointspace",
        dim: int | None = None,
        *,
        uri: str | None = None,
        mode: str = "r",
        force: bool = False,
        **info,
    ):
        self.target, self.collection = target, collection
        self.uri = uri or f"milvus://{target}"
        self.writable, self.closed, self.dirty = mode == "w", False, False
        self.client: Any = None  # a pymilvus MilvusClient once connected (pymilvus is untyped)
        if target.endswith(".db"):
            self._check_lite(Path(target), force)
        try:
            with self._translated():
                self._connect(dim, force, info)
        except BaseException:
            self._close_client()
            raise
        self.dim = self.info["dim"]

    def _connect(self, dim: int | None, force: bool, info: dict) -> None:
        self.client = _pymilvus().MilvusClient(self.target)
        if self.writable and force and self.client.has_collection(self.collection):
            self.client.drop_collection(self.collection)
        if self.client.has_collection(self.collection):
            self._open(dim)
        elif dim is None or not self.writable:
            raise IndexNotFoundError(f"no collection {self.collection!r} at {self.uri}")
        else:
            self.info = {"dim": dim, "kind": "flat", "backend": "milvus", **info, "fields": []}
            self._create(dim)

    def _check_lite(self, path: Path, force: bool) -> None:
        """Refuse what Milvus Lite would create, overwrite or fail on with a traceback."""
        if path.is_file():
            raise NotAnIndexError(f"index {self.uri}: {path} is a file, not a Milvus Lite database")
        if not path.exists():
            if not self.writable:
                raise IndexNotFoundError(f"no index at {self.uri}: no Milvus Lite database {path}")
            if not path.parent.is_dir():
                problem = f"the folder {path.parent} does not exist"
                raise IndexNotFoundError(f"index {self.uri}: {problem}")
            return
        if (foreign := sorted(set(os.listdir(path)) - LITE_FILES)) and not force:
            raise NotAnIndexError(
                f"{path} exists and is not a Milvus Lite database (it holds "
                f"{', '.join(foreign[:3])}): choose a new path, or pass --force to build the "
                "index inside it"
            )
        if (path / "LOCK").is_file() and not _served_here(path):
            # Milvus Lite's own lock: say that another process holds it, not just "failed".
            with open(path / "LOCK", "rb") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise BackendError(
                        f"index {self.uri}: the Milvus Lite database {path} is open in another "
                        "process; stop it (or serve a Milvus server instead) and retry"
                    ) from None

    def _open(self, dim: int | None) -> None:
        properties = self.client.describe_collection(self.collection).get("properties", {})
        if INFO_PROPERTY not in properties:
            raise NotAnIndexError(
                f"collection {self.collection!r} at {self.uri} was not made by jointspace: "
                "choose another ?collection=, or pass --force to replace it"
            )
        try:
            self.info = json.loads(properties[INFO_PROPERTY])
        except json.JSONDecodeError as err:
            problem = f"its {INFO_PROPERTY} is not JSON ({err})"
            raise BackendError(f"index {self.uri}: {problem}") from None
        if dim is not None and dim != self.info.get("dim"):
            held = self.info.get("dim")
            raise IndexMismatchError(f"{self.uri} holds {held}-d vectors, not {dim}-d")
        # A collection is released when the process that built it ends: load it to search.
        self.client.load_collection(self.collection)

    def _create(self, dim: int) -> None:
        milvus = _pymilvus()
        schema = milvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field("id", milvus.DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH)
        schema.add_field("vector", milvus.DataType.FLOAT_VECTOR, dim=dim)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
        properties = {INFO_PROPERTY: json.dumps(self.info)}
        self.client.create_collection(
            self.collection, schema=schema, index_params=index, properties=properties
        )

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Milvus' exceptions as one line naming the index."""
        milvus_error = _pymilvus().MilvusException
        try:
            yield
        except milvus_error as err:
            message = getattr(err, "message", None) or str(err)
            if message == "Open local milvus failed":
                message = "Milvus Lite could not open the database"
            raise BackendError(f"index {self.uri}: Milvus failed: {message}") from None

    def discard(self) -> None:
        self._close_client()
        self.closed = True

    def _close_client(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):  # closing a dead connection has nothing to say
                self.client.close()

    def add(self, ids, vectors, metadata=None) -> None:
        self._check_writable()
        vectors = self._check_add(ids, vectors, metadata)
        if too_long := [i for i in ids if len(i.encode()) > MAX_ID_LENGTH]:
            raise InputError(f"id {too_long[0][:40]!r}… is longer than {MAX_ID_LENGTH} bytes")
        if present := self.get(ids):
            raise InputError(f"ids already in the index: {sorted(present)[:5]}")
        metadata = metadata or [{} for _ in ids]
        for m in metadata:
            if clash := set(m) & set(RESERVED):
                raise InputError(f"metadata keys {sorted(clash)} are reserved in Milvus")
        rows = [
            {**m, "id": i, "vector": v.tolist()}
            for i, v, m in zip(ids, vectors, metadata, strict=True)
        ]
        with self._translated():
            self.client.insert(self.collection, rows)
        self.dirty = True
        if new := {key for m in metadata for key in m} - set(self.info.get("fields", [])):
            self.info["fields"] = sorted(set(self.info.get("fields", [])) | new)
            with self._translated():
                properties = {INFO_PROPERTY: json.dumps(self.info)}
                self.client.alter_collection_properties(self.collection, properties=properties)

    def search(
        self, queries, k=10, filter=None, *, ef_search=None, nprobe=None
    ) -> list[list[IndexHit]]:
        queries = self._check_search(queries, k)
        # Milvus' own names for the per-search settings of its HNSW (ef) and IVF (nprobe)
        # indexes; this back-end builds FLAT collections, where Milvus ignores them.
        params: dict[str, int] = {}
        if ef_search is not None:
            params["ef"] = max(int(ef_search), k)  # Milvus refuses an ef below the limit
        if nprobe is not None:
            params["nprobe"] = int(nprobe)
        expression = ""
        if filter:
            expr = parse_filter(filter)
            if "fields" in self.info:  # collections built before fields were recorded lack it
                check_fields(expr, self.info["fields"], filter)
            expression = to_milvus(expr)
        with self._translated():
            results = self.client.search(
                self.collection,
                data=queries.tolist(),
                limit=k,
                filter=expression,
                output_fields=["*"],
                search_params={"metric_type": "IP", "params": params},
            )
        return [[self._hit(h) for h in hits] for hits in results]

    @staticmethod
    def _hit(raw: dict) -> IndexHit:
        entity = {k: v for k, v in raw.get("entity", {}).items() if k not in RESERVED}
        return IndexHit(str(raw["id"]), float(raw["distance"]), entity)

    def delete(self, ids: Sequence[str]) -> int:
        self._check_writable()
        existing = list(self.get(ids))
        if existing:
            with self._translated():
                self.client.delete(self.collection, ids=existing)
            self.dirty = True
        return len(existing)

    def ids(self) -> set[str]:
        with self._translated():
            rows = self.client.query(self.collection, filter='id != ""', output_fields=["id"])
        return {r["id"] for r in rows}

    def get(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not len(ids):
            return {}
        with self._translated():
            rows = self.client.get(self.collection, ids=list(ids), output_fields=["*"])
        return {r["id"]: {k: v for k, v in r.items() if k not in RESERVED} for r in rows}

    def save(self) -> None:
        self._check_writable()
        if self.dirty:
            with self._translated():
                self.client.flush(self.collection)
            self.dirty = False

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self.writable:
                self.save()
        finally:
            self._close_client()
            self.closed = True


def _pymilvus():
    """The pymilvus module, or a one-line error naming what to install."""
    try:
        import pymilvus
    except ImportError as err:
        raise MissingPackageError(
            "Milvus indexes need pymilvus: `pip install pymilvus milvus-lite`"
        ) from err
    return pymilvus


def _served_here(path: Path) -> bool:
    """Whether this process already runs Milvus Lite on ``path`` (it then holds the lock)."""
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return False  # without Milvus Lite this process cannot be serving the database

    return os.path.abspath(path) in getattr(server_manager_instance, "_servers", {})
