"""A built-in dataset replaces only a folder that a build wrote, unless forced."""

from __future__ import annotations

from pathlib import Path

from jointspace.data.manifest import ManifestError

BUILT = {"manifest.csv", "images", "clips"}  # everything a builder writes at the top level


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
