"""Built-in datasets, made offline from data that installed packages ship."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jointspace.data.builtin.digits import build_digits
from jointspace.data.builtin.digits_vqa import build_digits_vqa
from jointspace.data.builtin.emoji import build_emoji
from jointspace.data.builtin.emoji_pairs import build_emoji_pairs
from jointspace.data.builtin.emoji_pairs_vqa import build_emoji_pairs_vqa
from jointspace.data.builtin.spoken_digits import build_spoken_digits
from jointspace.data.builtin.target import default_cache_dir
from jointspace.data.builtin.tuxpaint import build_tuxpaint
from jointspace.data.manifest import Manifest, ManifestError, read_manifest
from jointspace.data.shard_set import is_shard_spec
from jointspace.registry import available, lookup

PREFIX = "builtin:"


def build_dataset(name: str, root: Path | None = None, **kwargs) -> Path:
    """Build (or reuse the cached) built-in dataset ``name``; returns its manifest path."""
    try:
        builder = lookup("dataset", name)
    except KeyError as err:
        raise ManifestError(err.args[0]) from None
    return builder(root, **kwargs)


def resolve_manifest(spec: str | Path) -> Path:
    """A manifest path, or ``builtin:NAME`` (or a bare built-in name) built on demand."""
    text = str(spec)
    if text.startswith(PREFIX):
        return build_dataset(text.removeprefix(PREFIX))
    if is_shard_spec(text):
        raise ManifestError(
            f"{text} names tar shards: this command reads a manifest (train, embed and "
            "index build read shards; see docs/data.md)"
        )
    path = Path(spec)
    if path.exists():
        return path
    if text in available("dataset"):
        return build_dataset(text)
    known = ", ".join(available("dataset"))
    raise ManifestError(f"manifest not found: {path} (built-in datasets: {known})")


def load_manifest(
    spec: str | Path, modalities: Sequence[str], *, split: str | None = None, skip_bad: bool = False
) -> Manifest:
    """Resolve a path or ``builtin:NAME``, validate it and keep one split (all rows if None)."""
    manifest = read_manifest(resolve_manifest(spec), required=modalities, skip_bad=skip_bad)
    return manifest.split(split) if split else manifest


__all__ = [
    "build_dataset",
    "build_digits",
    "build_digits_vqa",
    "build_emoji",
    "build_emoji_pairs",
    "build_emoji_pairs_vqa",
    "build_spoken_digits",
    "build_tuxpaint",
    "default_cache_dir",
    "load_manifest",
    "resolve_manifest",
]
