"""A built-in dataset replaces only a folder that a build wrote, unless forced."""

from __future__ import annotations

import os
from pathlib import Path

from jointspace.data.manifest import ManifestError

BUILT = {"manifest.csv", "images", "clips"}  # everything a builder writes at the top level


def default_cache_dir() -> Path:
    """``$JOINTSPACE_CACHE`` or ``~/.cache/jointspace``."""
    # An empty variable counts as unset, so it never means "the current directory".
    value = os.environ.get("JOINTSPACE_CACHE")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "jointspace"


def dataset_dir(root: Path | None, name: str) -> Path:
    """Where built-in dataset ``name`` is built: ``root/name``, by default in the cache."""
    return Path(root or default_cache_dir() / "datasets") / name


def reuse_or_check(target: Path, *, force: bool, overwrite: bool) -> bool:
    """True when ``target`` holds a finished build to reuse; else checks that it may be built
    (``check_target``) and returns False."""
    if (target / "manifest.csv").is_file() and not overwrite:
        return True
    check_target(target, force)
    return False


def check_target(target: Path, force: bool = False) -> None:
    """Refuse to replace ``target`` when it holds anything a build did not write."""
    if force or not target.exists():
        return
    if not target.is_dir():
        raise ManifestError(f"{target} exists and is not a folder; move it or pass --force")
    foreign = sorted(p.name for p in target.iterdir() if p.name not in BUILT)
    if foreign:
        shown = ", ".join(foreign[:3]) + (" …" if len(foreign) > 3 else "")
        raise ManifestError(
            f"{target} holds files a dataset build did not write ({shown}); "
            "choose another --root or pass --force to replace the folder"
        )
