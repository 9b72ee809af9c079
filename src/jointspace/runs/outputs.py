"""One rule for outputs: never replace what jointspace did not write; replacing needs --force."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from jointspace.atomic import write_text_atomic
from jointspace.errors import JointspaceError

# Written into every output directory a command creates: which command, and (once it finished)
# which top-level entries it wrote, so --force can tell its own files from a user's notes.
MARKER = ".jointspace-output"


class OutputExistsError(JointspaceError, FileExistsError):
    """An output path already holds something the command may not (or was not told to) replace."""


def claim_file(path: Path, force: bool) -> None:
    """Refuse an existing ``path`` unless ``force``; the caller then writes it atomically."""
    if path.is_dir():
        raise OutputExistsError(f"{path} is a directory: give a file path")
    if path.exists() and not force:
        raise OutputExistsError(
            f"{path} already exists: pass --force to replace it, or choose another path"
        )


def claim_dir(path: Path, command: str, force: bool, allowed: tuple[str, ...] = ()) -> bool:
    """Check that ``jointspace COMMAND`` may write directory ``path``.

    True when ``path`` holds an earlier output of the same command that ``force`` lets it replace.
    """
    if not path.exists():
        return False
    if not path.is_dir():
        raise OutputExistsError(f"{path} is a file, not a directory")
    entries = {p.name for p in path.iterdir()}
    if not entries:
        return False
    marker = read_marker(path)
    if marker is None or marker.get("command") != command:
        raise OutputExistsError(
            f"{path} is not empty and was not written by `jointspace {command}` "
            f"(no {MARKER} file): choose another --out or move it away"
        )
    # A run killed before it finished recorded no entries: everything in it is its own.
    written = set(marker.get("entries") or entries)
    foreign = sorted(entries - written - set(allowed) - {MARKER})
    if foreign:
        raise OutputExistsError(
            f"{path} holds {', '.join(foreign)}, which `jointspace {command}` did not write: "
            "move it away or choose another --out"
        )
    if not force:
        raise OutputExistsError(
            f"{path} holds an earlier `jointspace {command}` output: pass --force to replace it, "
            "or choose another --out"
        )
    return True


def prepare_dir(path: Path, command: str, force: bool, allowed: tuple[str, ...] = ()) -> None:
    """Claim ``path``, remove the earlier output it may replace, and mark it as in progress."""
    if claim_dir(path, command, force, allowed):
        shutil.rmtree(path)
    mark_dir(path, command, done=False)


def mark_dir(path: Path, command: str, *, done: bool = True) -> None:
    """Record that ``command`` wrote ``path``; when ``done``, list what it holds now."""
    record: dict = {"command": command}
    if done:
        record["entries"] = sorted(p.name for p in path.iterdir() if p.name != MARKER)
    path.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path / MARKER, json.dumps(record) + "\n")


def read_marker(path: Path) -> dict | None:
    """The marker of an output directory, or None when it has none (or an unreadable one)."""
    try:
        record = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
