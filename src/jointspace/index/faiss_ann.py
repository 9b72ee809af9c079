"""The approximate structure (HNSW graph or IVF-PQ) of an index: a cache derived from the log.

It covers rows ``[0, covers)`` (FAISS ids are row numbers). Its file is rewritten only once it
covers twice the rows of the saved one, and at a writer's close, so a build writes O(N) bytes in
all; opening adds rows ``[covers, N)`` from the log. A missing or unreadable cache is rebuilt.
"""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np

from jointspace.atomic import atomic_path
from jointspace.index import tuning
from jointspace.index.faiss_files import CACHES

TRAIN_MIN = 2048  # ivfpq stays exact below this many rows
TUNED = ("ef_search", "nprobe", "shortlist", "reached", "target", "recall_queries")
TUNING_QUERIES = "tuning_queries"  # index.json: what the recorded recall was measured on
BLOCK = 65536
log = logging.getLogger(__name__)


class Ann:
    """``structure`` is None while the index searches exactly (flat, or IVF-PQ not yet trained)."""

    def __init__(self, folder: Path, kind: str, dim: int):
        self.folder, self.kind, self.dim = folder, kind, dim
        self.structure: faiss.Index | None = None
        self.saved = 0  # rows the cache file on disk covers
        self.changed = False  # rows added since open: tune again at close

    @property
    def path(self) -> Path | None:
        return self.folder / CACHES[self.kind] if self.kind in CACHES else None

    @property
    def covers(self) -> int:
        return 0 if self.structure is None else int(self.structure.ntotal)

    def load(self, vectors: np.ndarray) -> None:
        """Read the cache (when it fits this log) and add the rows it lacks."""
        if self.path is None:
            return
        self.structure = self._read(len(vectors))
        self.saved = self.covers
        if self.structure is None and self.kind == "hnsw":
            self.structure = tuning.new_hnsw(self.dim)
        self.catch_up(vectors)

    def _read(self, rows: int) -> faiss.Index | None:
        if self.path is None or not self.path.is_file():
            return None
        try:
            found = faiss.read_index(str(self.path))
        except (RuntimeError, MemoryError):
            found = None
        if found is None or found.d != self.dim or found.ntotal > rows:
            log.warning("%s does not fit the index: rebuilt from the vector log", self.path)
            return None
        return found

    def catch_up(self, vectors: np.ndarray) -> None:
        """Add rows ``[covers, len(vectors))`` to the structure, if there is one."""
        if self.structure is None:
            return
        for start in range(self.covers, len(vectors), BLOCK):
            block = np.ascontiguousarray(vectors[start : start + BLOCK], dtype=np.float32)
            self.structure.add_with_ids(block, np.arange(start, start + len(block)))
            self.changed = True

    def save(self, *, final: bool = False) -> None:
        """Rewrite the cache once it covers 2x the saved rows (or, at close, any new row)."""
        if self.structure is None or self.path is None or self.covers == self.saved:
            return
        if not final and self.covers < 2 * self.saved:
            return
        with atomic_path(self.path) as tmp, open(tmp, "wb") as file:
            # Through Python, so a full disk is an OSError (atomic_path names it in one line).
            faiss.write_index(self.structure, faiss.PyCallbackIOWriter(file.write))  # type: ignore[attr-defined]
        self.saved = self.covers

    def finish(
        self,
        vectors: np.ndarray,
        info: dict,
        queries: np.ndarray | None = None,
        described: dict | None = None,
    ) -> None:
        """At a writer's close: train IVF-PQ on the whole corpus when due, tune, save.

        ``queries``: tune on these (another modality's embeddings) rather than the corpus's own
        rows; ``described`` says what they are, recorded as ``tuning_queries``."""
        if info["kind"] == "auto":
            kind, reason = tuning.choose_kind(len(vectors), self.dim, info.get("memory"))
            if kind != self.kind:
                self._switch(kind, vectors)
            info.update(auto_kind=kind, auto_reason=reason)
        if self.kind == "ivfpq":
            self._train_when_due(vectors, info)
        if self.structure is None:
            return
        described = described or {"source": "corpus"}
        recorded = {k: v for k, v in info.get(TUNING_QUERIES, {}).items() if k != "count"}
        # Tuned again when rows were added or other queries are given; it needs a query and
        # something to find.
        retune = self.changed or (queries is not None and recorded != described)
        if retune and self.covers >= 2:
            result = tuning.tune(self.structure, vectors, queries=queries)
            for name in [*TUNED, *(key for key in info if key.startswith("recall_at_"))]:
                info.pop(name, None)
            info.update(result)
            info[TUNING_QUERIES] = {**described, "count": result["recall_queries"]}
            self.changed = False
        self.save(final=True)  # also a cache that was missing and rebuilt on open

    def _switch(self, kind: str, vectors: np.ndarray) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        self.kind, self.structure, self.saved = kind, None, 0
        self.load(vectors)

    def _train_when_due(self, vectors: np.ndarray, info: dict) -> None:
        n, trained = len(vectors), int(info.get("trained_rows", 0))
        due = self.structure is None or n >= 2 * trained  # no cache (lost or never made) too
        if n < int(info.get("train_min", TRAIN_MIN)) or not due:
            return
        nlist, m = info.get("nlist"), info.get("m")
        self.structure = tuning.build_ivfpq(vectors, nlist=nlist, m=m)
        info.update(nlist=self.structure.nlist, m=self.structure.pq.M, trained_rows=n)
        self.changed = True

    def search(
        self,
        vectors: np.ndarray,
        queries: np.ndarray,
        k: int,
        selector: faiss.IDSelector | None,
        settings: dict,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows with the given ef_search / nprobe / shortlist (None: the structure's)."""
        assert self.structure is not None
        return tuning.search_tuned(
            self.structure, vectors, queries, k, selector=selector, **settings
        )
