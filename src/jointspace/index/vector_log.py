"""``vectors.f32``: the append-only log of every vector ever added, row r at byte r·dim·4.

Rows up to the committed count (recorded in SQLite with a checksum per appended chunk) are the
index; bytes past it belong to a writer that was killed before its commit: readers ignore them
and the next writer truncates them. Appending never rewrites what is there, so a save costs
what it adds, not what the index holds.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from jointspace.atomic import disk_full_translated
from jointspace.index.errors import DamagedIndexError

BLOCK = 1 << 22  # bytes per read while verifying checksums
# A chunk's checksum: "xxh3:<16 hex>" (XXH3-64 runs at memory speed, ~18x CRC-32, which was
# ~10 % of a build; it guards against damage, not forgery). Folders written earlier hold
# "crc32:<8 hex>" or a bare SHA-256 hex digest: still checked.
XXH3, CRC = "xxh3:", "crc32:"


def _write(file, data: memoryview) -> None:
    """One write to the log (a seam: tests make it fail as a full disk would)."""
    while data:
        data = data[file.write(data) :]


class VectorLog:
    """The rows of ``path``: ``rows`` written (a writer's unsaved ones too), ``committed`` saved.

    ``dtype``: float32 for the log itself; float16 / int8 for a scan copy (``vectors.f16``,
    ``codes.i8``), which is derived from the log and so keeps no checksum (``hashed=False``).
    """

    def __init__(
        self,
        path: Path,
        dim: int,
        committed: int,
        writable: bool,
        dtype: np.dtype | type = np.float32,
        hashed: bool = True,
    ):
        self.dtype, self.hashed = np.dtype(dtype), hashed
        self.path, self.dim, self.row_bytes = path, dim, dim * self.dtype.itemsize
        self.rows = self.committed = committed
        self.file = None
        self._view: np.ndarray | None = None
        self._hash = xxhash.xxh3_64()  # of the rows since the last commit
        if writable:
            # Held open for the writer's lifetime; closed by close().
            self.file = open(path, "r+b" if path.exists() else "w+b", buffering=0)  # noqa: SIM115
            end = committed * self.row_bytes
            if os.fstat(self.file.fileno()).st_size > end:  # a killed writer's unsaved rows
                self.file.truncate(end)
            self.file.seek(end)

    def check(self, chunks: list[tuple[int, int, str]], uri: str, meta: str) -> None:
        """Refuse a log shorter than the committed rows or whose chunks' checksums differ."""
        need = self.committed * self.row_bytes
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            if need == 0:
                return
            raise DamagedIndexError(uri, f"{self.path} is missing") from None
        if size < need:
            raise DamagedIndexError(
                uri,
                f"{self.path} does not match {meta} (it holds {size // self.row_bytes} rows, "
                f"{self.committed} were committed: truncated)",
            )
        with open(self.path, "rb", buffering=0) as file:
            for start, count, recorded in chunks:
                file.seek(start * self.row_bytes)
                if _checksum(file, count * self.row_bytes, recorded) != recorded:
                    raise DamagedIndexError(
                        uri,
                        f"{self.path} does not match {meta} (the checksum of rows "
                        f"{start}-{start + count - 1} differs: replaced or edited)",
                    )

    def append(self, vectors: np.ndarray) -> None:
        """Write rows after the last one; on failure the log is as before."""
        assert self.file is not None, "only a writer appends"
        if not len(vectors):
            return
        data = memoryview(np.ascontiguousarray(vectors, dtype=self.dtype).data).cast("B")
        try:
            with disk_full_translated(self.path):
                _write(self.file, data)
        except BaseException:
            self.cut(self.rows)
            raise
        if self.hashed:  # only after the write went in: a failed append leaves the hash as is
            self._hash.update(data)
        self.rows += len(vectors)
        self._view = None

    def cut(self, rows: int) -> None:
        """Drop the unsaved rows from ``rows`` on: undoes a scan copy's append when the log's
        failed (a hashed log is only cut by its own failed append, before its checksum changes)."""
        assert self.file is not None and self.committed <= rows <= self.rows
        assert rows == self.rows or not self.hashed, "the checksum would cover dropped rows"
        self._view = None  # drop the mapping before cutting the file under it
        self.file.truncate(rows * self.row_bytes)
        self.file.seek(rows * self.row_bytes)
        self.rows = rows

    def pending(self) -> tuple[int, int, str] | None:
        """Make unsaved rows durable; the chunk (start, rows, checksum) to commit, or None."""
        if self.rows == self.committed:
            return None
        assert self.file is not None
        with disk_full_translated(self.path):
            os.fsync(self.file.fileno())
        return self.committed, self.rows - self.committed, f"{XXH3}{self._hash.hexdigest()}"

    def mark_committed(self) -> None:
        self.committed = self.rows
        self._hash.reset()

    def view(self) -> np.ndarray:
        """The rows as a read-only ``[rows, dim]`` memory map (never loaded whole)."""
        if self._view is None or len(self._view) != self.rows:
            if self.rows == 0:
                self._view = np.empty((0, self.dim), dtype=self.dtype)
            else:
                self._view = np.memmap(
                    self.path, dtype=self.dtype, mode="r", shape=(self.rows, self.dim)
                )
        return self._view

    def size_rows(self) -> int:
        """Whole rows the file holds (committed or not); 0 when it is missing."""
        try:
            return self.path.stat().st_size // self.row_bytes
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        self._view = None
        if self.file is not None:
            self.file.close()
            self.file = None


class _Crc32:
    """CRC-32 with hashlib's interface, for chunks recorded as "crc32:"."""

    def __init__(self):
        self.value = 0

    def update(self, data) -> None:
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self) -> str:
        return f"{self.value:08x}"


def _checksum(file, size: int, recorded: str) -> str:
    """The next ``size`` bytes' checksum, by the algorithm ``recorded`` was made with."""
    prefix = next((p for p in (XXH3, CRC) if recorded.startswith(p)), "")  # "": SHA-256
    makers: dict[str, Callable[[], Any]] = {XXH3: xxhash.xxh3_64, CRC: _Crc32, "": hashlib.sha256}
    digest = makers[prefix]()
    buffer = bytearray(BLOCK)
    while size > 0:
        got = file.readinto(memoryview(buffer)[: min(BLOCK, size)])
        if not got:
            break
        digest.update(memoryview(buffer)[:got])
        size -= got
    return prefix + digest.hexdigest()
