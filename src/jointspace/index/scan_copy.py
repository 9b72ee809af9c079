"""The scan copy of the log for ``storage=fp16|int8``: ``vectors.f16`` / ``codes.i8``.

Same rows as ``vectors.f32`` (which stays the truth), appended with them and made durable by
the same save, so its committed length is always the log's. Exact search scans the copy (half
or a quarter of the bytes) and re-scores a shortlist with the fp32 rows. int8 is fitted on the
first rows added; its ranges go into ``index.json`` before the save that first commits codes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.index import scan
from jointspace.index.errors import IndexUriError
from jointspace.index.faiss_files import COPIES, generation_file
from jointspace.index.scan import Storage
from jointspace.index.vector_log import VectorLog

BLOCK = 65536  # rows re-encoded at a time
log = logging.getLogger(__name__)


class ScanCopy:
    """A ``VectorLog`` of codes plus the ``Storage`` that encodes and searches them."""

    def __init__(
        self,
        folder: Path,
        dim: int,
        spec: dict[str, Any],
        committed: int,
        writable,
        generation: int = 0,
    ):
        self.spec = dict(spec)
        self.name = spec["name"]
        self.storage: Storage | None = None  # None: int8 not fitted yet (no row added)
        if self.name == "fp16" or "low" in spec:
            self.storage = Storage.from_dict(spec)
        dtype = np.float16 if self.name == "fp16" else np.int8
        path = folder / generation_file(COPIES[self.name], generation)
        self.codes = VectorLog(path, dim, committed, writable, dtype=dtype, hashed=False)

    @property
    def rows(self) -> int:
        return self.codes.rows

    def append(self, vectors: np.ndarray) -> None:
        """Encode and append rows; int8 is fitted on the first (``spec`` then holds its ranges)."""
        if self.storage is None:
            storage = scan.storage(self.name).fit(vectors)
            self.storage, self.spec = storage, storage.to_dict()
        self.codes.append(self.storage.encode(vectors))

    def search(self, exact: np.ndarray, queries: np.ndarray, k: int, rows: np.ndarray | None):
        assert self.storage is not None
        return self.storage.search(self.codes.view(), queries, k, rows=rows, exact=exact)


def open_copy(
    folder: Path, info: dict, log_: VectorLog, writable: bool, generation: int = 0
) -> ScanCopy | None:
    """The index's scan copy (None for fp32) of the log's ``generation``. One shorter than the
    log (lost or cut) is re-encoded from the log by a writer; a reader scans fp32 instead."""
    spec = info.get("storage")
    if spec is None or spec == {"name": "fp32"}:
        return None
    if not isinstance(spec, dict) or spec.get("name") not in COPIES:
        raise IndexUriError(f"{folder / 'index.json'}: unknown storage {spec!r}")
    committed = log_.committed
    found = ScanCopy(folder, log_.dim, spec, 0, writable=False, generation=generation)
    # Codes without the ranges that made them (an index.json edited by hand) are redone too.
    have = found.codes.size_rows() if found.storage is not None or not committed else 0
    if have >= committed:
        return ScanCopy(folder, log_.dim, spec, committed, writable, generation)
    if not writable:
        log.warning("%s is shorter than the log: exact search scans fp32", found.codes.path)
        return None
    copy = ScanCopy(folder, log_.dim, spec, have, writable=True, generation=generation)
    vectors = log_.view()
    for start in range(have, committed, BLOCK):
        copy.append(np.ascontiguousarray(vectors[start : min(start + BLOCK, committed)]))
    copy.codes.pending()
    copy.codes.mark_committed()
    return copy


def check_storage(info: dict, asked: str | None, uri: str) -> None:
    """An existing index keeps the storage it was built with: another one is refused."""
    have = (info.get("storage") or {"name": "fp32"})["name"]
    if asked is not None and asked != have:
        raise IndexUriError(
            f"index {uri} was built with storage={have}, not {asked}: open it without storage=, "
            "or rebuild it (`jointspace index build ... --force`)"
        )
