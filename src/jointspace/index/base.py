"""The vector index contract every back-end implements (like qdrant-client's one API)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jointspace.errors import InputError
from jointspace.index.errors import IndexMismatchError, ReadOnlyIndexError


@dataclass
class IndexHit:
    """One search result: the item's id, its inner-product score and its stored metadata."""

    id: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


class VectorIndex(ABC):
    """String ids → float32 vectors (inner product) plus JSON metadata, persisted on disk.

    Opened for reading it never writes; a writer saves only what it changed.
    """

    dim: int
    info: dict[str, Any]
    uri: str
    writable: bool = False

    @abstractmethod
    def add(
        self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[dict] | None = None
    ) -> None:
        """Insert items; an id already present is refused (delete it first)."""

    @abstractmethod
    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        filter: str | None = None,
        *,
        ef_search: int | None = None,
        nprobe: int | None = None,
    ) -> list[list[IndexHit]]:
        """Top-k items per query row by inner product, optionally restricted by ``filter``.

        ``ef_search`` (HNSW) and ``nprobe`` (IVF) override the index's tuning for this call."""

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> int:
        """Remove items; returns how many existed."""

    @abstractmethod
    def ids(self) -> set[str]:
        """Every id stored."""

    def present(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored (back-ends may answer without reading metadata)."""
        return set(self.get(ids))

    @abstractmethod
    def get(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Metadata of the given ids that exist."""

    @abstractmethod
    def save(self) -> None:
        """Make everything added or deleted so far durable."""

    def compact(self) -> int:
        """Reclaim the space of deleted items; returns how many rows went. Back-ends that
        compact on their own (Milvus merges its segments in the background) do nothing."""
        self._check_writable()
        return 0

    def tuning_queries(self, queries: np.ndarray, **described: Any) -> None:
        """Queries like those the index will get (e.g. captions' embeddings for an image index)
        for a writer's close to tune approximate search on; ``described`` (what they are) is
        recorded with the tuning. Back-ends that tune nothing ignore them."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Save what a writer changed, then release files, locks and connections."""

    @abstractmethod
    def discard(self) -> None:
        """Release files, locks and connections without saving: unsaved changes are dropped."""

    def __len__(self) -> int:
        return len(self.ids())

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_writable(self) -> None:
        if not self.writable:
            raise ReadOnlyIndexError(
                f"index {self.uri} was opened for reading: open_index(uri, mode='w') to change it"
            )

    def _check_add(self, ids: Sequence[str], vectors: np.ndarray, metadata) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise IndexMismatchError(f"vectors must be [n, {self.dim}], got {vectors.shape}")
        if len(ids) != len(vectors) or (metadata is not None and len(metadata) != len(ids)):
            raise InputError(f"{len(ids)} ids for {len(vectors)} vectors: give one id per vector")
        unique = set(ids)
        if len(unique) != len(ids):
            raise InputError("ids must be unique within one add")
        if "" in unique or not all(issubclass(kind, str) for kind in set(map(type, ids))):
            raise InputError("ids must be non-empty strings")
        return vectors

    def _check_search(self, queries: np.ndarray, k: int) -> np.ndarray:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise IndexMismatchError(
                f"queries must have {self.dim} dimensions, got {queries.shape[1]}"
            )
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        return queries
