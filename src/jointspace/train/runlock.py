"""One writer per run directory: an exclusive ``fcntl`` lock on ``RUN/.lock``.

The kernel drops the lock when its holder dies (kill -9 included), so a stale lock file never
blocks. The lock is re-entrant within one process: the pipeline may hold it around writing the
run's config and the Trainer takes it again for the loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from jointspace.errors import JointspaceError

LOCK_FILE = ".lock"
_held: dict[str, list[int]] = {}  # resolved run dir → [fd, depth]
_guard = threading.Lock()


class RunLockedError(JointspaceError):
    """Another process is writing into the same run directory."""


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run directory's lock for the block; refuse at once if another process has it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = str(run_dir.resolve())
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
        else:
            fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLockedError(
                    f"{run_dir} is in use by another training process (lock {LOCK_FILE}); "
                    "wait for it to finish or choose another output directory"
                ) from None
            _held[key] = [fd, 1]
    try:
        yield run_dir
    finally:
        with _guard:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                os.close(entry[0])  # closing releases the flock
