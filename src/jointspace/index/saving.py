"""When a long build saves: after so many seconds or bytes of new vectors, whichever comes first.

A save costs about the same whatever it carries (an fsync, one SQLite commit), so saving by
time and bytes rather than every few batches keeps that cost small in a fast build, while a
killed build still loses at most ``seconds`` of work or ``bytes`` of vectors.
"""

from __future__ import annotations

import time

SECONDS, BYTES = 2.0, 64 << 20


class SaveSchedule:
    """``added(nbytes)`` after each add says whether a save is due; ``saved()`` after it.

    ``batches``: save after that many adds instead (tests and benchmarks pin saves with it).
    """

    def __init__(
        self, seconds: float = SECONDS, nbytes: int = BYTES, batches: int | None = None
    ) -> None:
        self.seconds, self.nbytes, self.batches = seconds, nbytes, batches
        self._start, self._bytes, self._adds = time.monotonic(), 0, 0

    def added(self, nbytes: int) -> bool:
        self._bytes += nbytes
        self._adds += 1
        if self.batches is not None:
            due = self._adds >= self.batches
        else:
            due = self._bytes >= self.nbytes or time.monotonic() - self._start >= self.seconds
        return due

    def saved(self) -> None:
        """Restart the count once a save is done (its own time is not the next one's)."""
        self._start, self._bytes, self._adds = time.monotonic(), 0, 0
