"""Atomic file and directory writes: a crash leaves the old file or the new one, never half.

Temp entries are named ``.<target>.<8 chars>.tmp`` beside their target, with the modes a plain
``open``/``mkdir`` would give (umask applies: 0644/0755 under umask 022), so what we write is
as readable as any file the user makes. A full disk raises ``DiskFullError`` naming the target.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from jointspace.errors import DiskFullError

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"
# Exactly the names made here (and by tempfile.mkstemp, which older versions used).
TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")
FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def is_disk_full(err: BaseException) -> bool:
    """True for ENOSPC/EDQUOT, also when a library wrapped it in its own error's text."""
    if isinstance(err, OSError) and err.errno in FULL_ERRNOS:
        return True
    return "No space left on device" in str(err) or "Disk quota exceeded" in str(err)


def disk_full(target: Path) -> DiskFullError:
    """The one-line error for a write to ``target`` that ran out of space."""
    err = DiskFullError(
        f"no space left on device writing {target}; the previous version is intact — "
        "free some space and run the command again"
    )
    err.path = target  # not .filename: OSError would then print "[Errno 28] None: …"
    return err


def _temp_name(target: Path) -> Path:
    tag = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return target.with_name(f".{target.name}.{tag}.tmp")


def _new_temp_file(target: Path) -> Path:
    for _ in range(100):
        tmp = _temp_name(target)
        try:
            # 0o666 & ~umask, as open() would: mkstemp's 0600 hid artifacts from other users.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {target}")


def _new_temp_dir(target: Path) -> Path:
    for _ in range(100):
        tmp = _temp_name(target)
        try:
            tmp.mkdir(0o777)  # umask applies, as for mkdir(1)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary directory beside {target}")


@contextlib.contextmanager
def disk_full_translated(target: Path) -> Iterator[None]:
    """Turn a full disk while writing ``target`` into one ``DiskFullError`` naming it."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as err:
        if is_disk_full(err):
            raise disk_full(target) from None
        raise


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; it replaces ``target`` only if the block succeeds."""
    target = Path(target)
    with disk_full_translated(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = _new_temp_file(target)
        try:
            yield tmp_path
            os.replace(tmp_path, target)
        finally:
            tmp_path.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` with ``os.write``, so a full disk surfaces as an ``OSError``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(fd, view[: 1 << 24]) :]
    finally:
        os.close(fd)


def write_text_atomic(target: str | Path, text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        write_bytes(tmp, text.encode())


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        write_bytes(tmp, data)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces directory ``target`` on success."""
    target = Path(target)
    with disk_full_translated(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temp_dir(target)
        try:
            yield tmp
            # Move the old directory aside first: rename cannot replace a non-empty directory.
            # A kill between the two renames leaves `.NAME.old`; recover_dir() puts it back.
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def recover_dir(target: Path) -> None:
    """Finish an ``atomic_dir`` swap cut short: restore ``.NAME.old`` if ``NAME`` is missing."""
    old = target.with_name(f".{target.name}.old")
    if not old.is_dir():
        return
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(old, target)


def remove_stale_temps(
    directory: Path, targets: Callable[[str], bool] = lambda name: True
) -> list[Path]:
    """Delete temp entries a killed writer left in ``directory`` for targets ``targets`` accepts.

    Only our own name pattern; call it only while holding the lock that keeps the writers of
    those targets out of ``directory``.
    """
    removed = []
    if not directory.is_dir():
        return removed
    for entry in sorted(directory.iterdir()):
        match = TEMP_NAME.match(entry.name)
        if not match or not targets(match["target"]):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed
