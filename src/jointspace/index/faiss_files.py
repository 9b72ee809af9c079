"""The files of a FAISS index folder: the writer's lock, checksummed vectors, ``index.json``.

Save protocol: vectors go to ``index.faiss.next`` (temp + rename); one SQLite commit then records
their SHA-256 with the rows (the commit point); the rename to ``index.faiss`` follows. An open
accepts whichever of the two files has the committed checksum, so a crash anywhere leaves the
last committed state and a reader never sees half of a save.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

import faiss

from jointspace.atomic import atomic_path
from jointspace.index.errors import DamagedIndexError, IndexLockedError

INFO, VECTORS, META, LOCK = "index.json", "index.faiss", "meta.sqlite", "index.lock"
NEXT = VECTORS + ".next"
DATA_FILES = (INFO, VECTORS, NEXT, META, META + "-journal")
KINDS = ("flat", "hnsw", "ivfpq")
BLOCK = 1 << 20


def own_file(name: str) -> bool:
    """Whether a folder entry is one an index writes (so a folder of only these is an index's)."""
    temp = name.startswith((f".{INFO}.", f".{NEXT}.")) and name.endswith(".tmp")
    return name in DATA_FILES or name == LOCK or temp


class WriterLock:
    """An exclusive ``flock`` on ``index.lock``: one writer per index, across processes."""

    def __init__(self, folder: Path, uri: str):
        self.fd: int | None = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self.fd, 32).decode(errors="replace").strip()
            self.release()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise IndexLockedError(
                f"index {uri} is being written by another process{who}: "
                "wait for it to finish, then retry"
            ) from None
        # The pid only names the holder in the error above; the flock is what excludes.
        os.ftruncate(self.fd, 0)
        os.write(self.fd, str(os.getpid()).encode())

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def read_info(folder: Path, uri: str) -> dict:
    """``index.json``, refused clearly when it is not the object a writer left."""
    path = folder / INFO
    try:
        info = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise DamagedIndexError(uri, f"{path} is not text") from None
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise DamagedIndexError(uri, f"{path} is not valid JSON ({err.msg} at {where})") from None
    dim = info.get("dim") if isinstance(info, dict) else None
    if type(dim) is not int or dim < 1 or info.get("kind") not in KINDS:
        raise DamagedIndexError(uri, f"{path} lacks a positive 'dim' and a 'kind' in {KINDS}")
    return info


def write_info(folder: Path, info: dict) -> None:
    """Write ``index.json`` atomically."""
    target = folder / INFO
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(info, indent=2))


def write_vectors(index: faiss.Index, folder: Path) -> str:
    """Stream ``index`` to ``index.faiss.next`` through Python (so a full disk is an OSError)."""
    target, digest = folder / NEXT, hashlib.sha256()
    with atomic_path(target) as tmp, open(tmp, "wb") as file:

        def write(data: bytes) -> int:
            digest.update(data)
            _write(file, data)
            return len(data)

        faiss.write_index(index, faiss.PyCallbackIOWriter(write))  # type: ignore[attr-defined]
    return digest.hexdigest()


def _write(file, data: bytes) -> None:
    file.write(data)


def publish_vectors(folder: Path) -> None:
    """After the commit: the committed vectors take the name ``index.faiss``."""
    os.replace(folder / NEXT, folder / VECTORS)


def sha256_of(path: Path) -> str | None:
    """The file's SHA-256, or None when it does not exist."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while block := file.read(BLOCK):
                digest.update(block)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def read_vectors(path: Path, sha: str | None) -> faiss.Index | None:
    """Deserialise ``path``; None when it is absent or (given ``sha``) its bytes differ."""
    if sha is not None and sha256_of(path) != sha:
        return None
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:

            def read(size: int) -> bytes:
                data = file.read(size)
                digest.update(data)
                return data

            index = faiss.read_index(faiss.PyCallbackIOReader(read))  # type: ignore[attr-defined]
            digest.update(file.read())
    except FileNotFoundError:
        return None
    except RuntimeError:
        if sha is not None:  # replaced between the two reads by a writer's rename
            return None
        raise
    # The file may have been replaced since it was hashed: what was read must match too.
    return index if sha is None or digest.hexdigest() == sha else None
