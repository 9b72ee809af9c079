"""Milvus through pymilvus: a ``.db`` path runs embedded Milvus Lite, ``http://host:19530`` a
server or cluster, with the same code. Metadata lives in Milvus' dynamic fields."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from jointspace.index.base import IndexHit, VectorIndex
from jointspace.index.filters import parse_filter, to_milvus

RESERVED = ("id", "vector")
MAX_ID_LENGTH = 512
INFO_PROPERTY = "jointspace.info"  # a collection property: survives reopening, unlike descriptions


class MilvusIndex(VectorIndex):
    """One Milvus collection: VARCHAR primary key ``id``, FLOAT_VECTOR ``vector``, inner product."""

    def __init__(self, uri: str, collection: str = "jointspace", dim: int | None = None, **info):
        from pymilvus import MilvusClient

        self.uri, self.collection = uri, collection
        self.client = MilvusClient(uri)
        if self.client.has_collection(collection):
            properties = self.client.describe_collection(collection).get("properties", {})
            self.info = json.loads(properties.get(INFO_PROPERTY, "{}"))
            if dim is not None and dim != self.info.get("dim"):
                raise ValueError(f"{uri}/{collection} holds {self.info.get('dim')}-d vectors")
        elif dim is None:
            raise FileNotFoundError(f"no collection {collection!r} at {uri}; give dim= to create")
        else:
            self.info = {"dim": dim, "kind": "flat", "backend": "milvus", **info}
            self._create(dim)
        self.dim, self.closed = self.info["dim"], False

    def _create(self, dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
        properties = {INFO_PROPERTY: json.dumps(self.info)}
        self.client.create_collection(
            self.collection, schema=schema, index_params=index, properties=properties
        )

    def add(self, ids, vectors, metadata=None) -> None:
        vectors = self._check_add(ids, vectors, metadata)
        if present := self.get(ids):
            raise ValueError(f"ids already in the index: {sorted(present)[:5]}")
        metadata = metadata or [{} for _ in ids]
        for m in metadata:
            if clash := set(m) & set(RESERVED):
                raise ValueError(f"metadata keys {sorted(clash)} are reserved in Milvus")
        rows = [
            {**m, "id": i, "vector": v.tolist()}
            for i, v, m in zip(ids, vectors, metadata, strict=True)
        ]
        self.client.insert(self.collection, rows)

    def search(self, queries, k=10, filter=None) -> list[list[IndexHit]]:
        queries = self._check_search(queries, k)
        expression = to_milvus(parse_filter(filter)) if filter else ""
        results = self.client.search(
            self.collection,
            data=queries.tolist(),
            limit=k,
            filter=expression,
            output_fields=["*"],
            search_params={"metric_type": "IP"},
        )
        return [[self._hit(h) for h in hits] for hits in results]

    @staticmethod
    def _hit(raw: dict) -> IndexHit:
        entity = {k: v for k, v in raw.get("entity", {}).items() if k not in RESERVED}
        return IndexHit(str(raw["id"]), float(raw["distance"]), entity)

    def delete(self, ids: Sequence[str]) -> int:
        existing = list(self.get(ids))
        if existing:
            self.client.delete(self.collection, ids=existing)
        return len(existing)

    def ids(self) -> set[str]:
        rows = self.client.query(self.collection, filter='id != ""', output_fields=["id"])
        return {r["id"] for r in rows}

    def get(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not len(ids):
            return {}
        rows = self.client.get(self.collection, ids=list(ids), output_fields=["*"])
        return {r["id"]: {k: v for k, v in r.items() if k not in RESERVED} for r in rows}

    def save(self) -> None:
        self.client.flush(self.collection)

    def close(self) -> None:
        if self.closed:
            return
        self.save()
        self.client.close()
        self.closed = True
