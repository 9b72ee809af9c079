"""WebDataset tar shards (img2dataset / OpenCLIP layout) written from any validated manifest.

Each row becomes one sample ``KEY.{txt,json,jpg|png|wav|flac|…}``; shards are
``shard-000000.tar``…, each written atomically, then ``index.json`` (names, counts, splits,
modalities) so readers know lengths without reading the tars. Reading: ``data/shard_set.py``.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path

from jointspace.atomic import atomic_path, write_text_atomic
from jointspace.data.manifest import (
    FILE_COLUMNS,
    META_PREFIX,
    MODALITY_COLUMNS,
    Manifest,
    is_absent,
)
from jointspace.errors import JointspaceError

INDEX = "index.json"
FORMAT = "jointspace-shards"
SHARD_NAME = "shard-{:06d}.tar"
MAXCOUNT = 10_000  # samples per shard (img2dataset's default)
MAXSIZE = 1 << 30  # bytes per shard, roughly (a shard closes once it reaches this)
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "mp3")
EXTENSIONS = {"image": IMAGE_EXTENSIONS, "audio": AUDIO_EXTENSIONS}
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_MTIME = 946_684_800  # a fixed member time (2000-01-01): the same manifest gives the same bytes


class ShardError(JointspaceError, ValueError):
    """A shard (or shard set) that cannot be read or written; the message names the file."""


def sample_key(number: int, item_id: str) -> str:
    """A tar-safe sample key: the row number, then the id with anything but ``[A-Za-z0-9_-]``
    replaced (WebDataset splits member names at the first dot); the id itself is in the json."""
    safe = _UNSAFE.sub("-", item_id).strip("-")[:48]
    return f"{number:09d}_{safe}" if safe else f"{number:09d}"


def write_shards(
    manifest: Manifest | str | Path,
    out_dir: str | Path,
    *,
    maxcount: int = MAXCOUNT,
    maxsize: int = MAXSIZE,
    skip_bad: bool = False,
    on_sample: Callable[[int], None] | None = None,
) -> dict:
    """Write a manifest's rows as shards into ``out_dir`` (already claimed by the caller).

    ``manifest``: a validated ``Manifest``, or a path / ``builtin:NAME`` validated here (bad rows
    raise, or are skipped with ``skip_bad``). Returns the index written to ``out_dir/index.json``;
    ``on_sample(n)`` reports progress.
    """
    if maxcount < 1 or maxsize < 1:
        raise ShardError(f"maxcount and maxsize must be at least 1, got {maxcount}, {maxsize}")
    from webdataset import TarWriter

    if not isinstance(manifest, Manifest):
        from jointspace.data.builtin import resolve_manifest  # it reads shard specs: no cycle
        from jointspace.data.manifest import read_manifest

        manifest = read_manifest(resolve_manifest(manifest), skip_bad=skip_bad)
    out_dir = Path(out_dir)
    modalities = manifest.modalities
    first = _first_holders(manifest, modalities)
    shards: list[dict] = []
    rows = iter(enumerate(manifest.rows))
    pending = next(rows, None)
    while pending is not None:
        name = SHARD_NAME.format(len(shards))
        entry: dict = {"name": name, "samples": 0, "splits": {}}
        # Fixed member times: the same manifest always gives the same shard bytes.
        with (
            atomic_path(out_dir / name) as tmp,
            open(tmp, "wb") as handle,
            TarWriter(handle, encoder=False, mtime=_MTIME, mode=0o444) as tar,
        ):
            size = 0
            while pending is not None and entry["samples"] < maxcount and size < maxsize:
                number, row = pending
                size += tar.write(_sample(manifest, number, row, modalities, first[number]))
                entry["samples"] += 1
                split = row.get("split", "")
                entry["splits"][split] = entry["splits"].get(split, 0) + 1
                if on_sample is not None:
                    on_sample(number + 1)
                pending = next(rows, None)
        entry["bytes"] = (out_dir / name).stat().st_size
        shards.append(entry)
    index = _index(manifest, modalities, shards, first)
    write_text_atomic(out_dir / INDEX, json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    return index


def _first_holders(manifest: Manifest, modalities: list[str]) -> list[dict[str, list[str]]]:
    """Per row: the modalities whose value it is the first to hold, overall and in its split.

    Readers keep only such rows for ``embed`` and ``index build`` (a manifest's distinct items),
    so they need no memory of what they have seen.
    """
    seen_all: dict[str, set[str]] = {m: set() for m in modalities}
    seen_split: dict[tuple[str, str], set[str]] = {}
    marks = []
    for row in manifest.rows:
        mark: dict[str, list[str]] = {"all": [], "split": []}
        for modality in modalities:
            value = row[modality]
            if is_absent(value):
                continue  # nothing to embed or index
            if value not in seen_all[modality]:
                seen_all[modality].add(value)
                mark["all"].append(modality)
            in_split = seen_split.setdefault((modality, row.get("split", "")), set())
            if value not in in_split:
                in_split.add(value)
                mark["split"].append(modality)
        marks.append(mark)
    return marks


def _sample(
    manifest: Manifest, number: int, row: dict[str, str], modalities: list[str], first: dict
) -> dict[str, str | bytes]:
    """One WebDataset sample: ``__key__`` plus one entry (bytes) per member extension."""
    sample: dict[str, str | bytes] = {"__key__": sample_key(number, row["id"])}
    meta: dict = {"id": row["id"]}
    for column in ("label", "split"):
        if column in manifest.columns:
            meta[column] = row[column]
    meta |= {c: row[c] for c in manifest.columns if c.startswith(META_PREFIX)}
    files, absent = {}, []
    for modality in modalities:
        if is_absent(row[modality]):
            absent.append(modality)  # an empty cell: no member, named so readers know why
        elif modality == "text":
            sample["txt"] = row["text"].encode()
        elif modality in FILE_COLUMNS:
            path = manifest.resolve(row[modality])
            data = path.read_bytes()
            files[modality] = row[modality]
            sample[_extension(path, modality, data)] = data
    meta["files"] = files
    if absent:
        meta["absent"] = absent
    meta["first"] = first
    sample["json"] = json.dumps(meta, ensure_ascii=False).encode()
    return sample


def _extension(path: Path, modality: str, data: bytes) -> str:
    """The file's own extension when readers know it, else the one its content shows."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix in EXTENSIONS[modality]:
        return suffix
    if modality == "image":
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            found = (image.format or "").lower()
        return {"jpeg": "jpg", "tiff": "tif"}.get(found, found) if found else "png"
    import soundfile

    info = soundfile.info(io.BytesIO(data))
    return {"WAV": "wav", "FLAC": "flac", "OGG": "ogg", "MP3": "mp3"}.get(info.format, "wav")


def _index(manifest: Manifest, modalities: list[str], shards: list[dict], first: list) -> dict:
    splits: dict[str, int] = {}
    for entry in shards:
        for split, count in entry["splits"].items():
            splits[split] = splits.get(split, 0) + count
    distinct: dict[str, dict] = {}
    for modality in modalities:
        by_split: dict[str, int] = {}
        for row, mark in zip(manifest.rows, first, strict=True):
            if modality in mark["split"]:
                split = row.get("split", "")
                by_split[split] = by_split.get(split, 0) + 1
        total = sum(modality in mark["all"] for mark in first)
        distinct[modality] = {"all": total, "splits": by_split}
    return {
        "format": FORMAT,
        "version": 1,
        "manifest": str(manifest.path.resolve()),
        "samples": len(manifest),
        "modalities": [m for m in MODALITY_COLUMNS if m in modalities],
        "splits": splits,
        "distinct": distinct,
        "shards": shards,
    }
