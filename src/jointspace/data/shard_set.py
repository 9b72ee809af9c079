"""A set of tar shards named by a pattern or a folder: their counts, and their samples read back.

Counts come from the folder's ``index.json`` (written by ``jointspace data shards``); shards
without one (img2dataset's, say) are scanned once, reading only their json members.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jointspace.data.manifest import quote
from jointspace.data.shards import EXTENSIONS, FORMAT, INDEX, ShardError

# What a damaged or truncated tar raises while it is read (tarfile, gzip, the file system).
READ_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, zlib.error, AssertionError)


def is_shard_spec(spec: str | Path) -> bool:
    """Whether ``--data`` names shards (``…{000000..000009}.tar``, ``*.tar``, ``x.tar`` or a
    folder of shards) rather than a manifest."""
    text = str(spec)
    if text.rstrip("/").lower().endswith(".tar") or text.endswith((".tar}", ".tar]")):
        return True
    path = Path(text)
    return path.is_dir() and ((path / INDEX).is_file() or any(path.glob("*.tar")))


@dataclass
class Shard:
    """One tar file: its path, how many samples it holds (per split) and where they start."""

    path: str
    samples: int
    splits: dict[str, int] | None  # None: the samples carry no split
    offset: int = 0  # global number of its first sample: positions are stable across readers
    size: int | None = None  # bytes, as index.json records them

    def check_size(self) -> None:
        """Refuse a truncated tar before reading it: tar readers end quietly where a cut falls."""
        try:
            size = os.path.getsize(self.path)
            with open(self.path, "rb") as handle:
                handle.seek(max(0, size - 1024))
                tail = handle.read()
        except OSError as err:
            raise ShardError(f"{self.path}: cannot read the shard ({_reason(err)})") from None
        if self.size is not None and size != self.size:
            raise ShardError(
                f"{self.path}: {size} bytes where its index says {self.size}: the shard is "
                "truncated or was replaced; write it again (`jointspace data shards`)"
            )
        if size % 512 or tail.count(0) != len(tail) or size < 1024:
            raise ShardError(
                f"{self.path}: damaged or truncated shard (its size is not whole 512-byte tar "
                "blocks ending in the two empty blocks that close a tar)"
            )

    def count(self, split: str | None) -> int:
        if split is None:
            return self.samples
        return (self.splits or {}).get(split, 0)


@dataclass
class ShardSet:
    """The shards a spec names, in order, with counts; ``index`` is index.json when there is one."""

    spec: str
    shards: list[Shard]
    index: dict | None = None
    modalities: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, spec: str | Path) -> ShardSet:
        paths, index = _expand(str(spec))
        listed = {e["name"]: e for e in (index or {}).get("shards", [])}
        shards, offset = [], 0
        for path in paths:
            entry = listed.get(Path(path).name) if index else None
            if entry is None:
                entry = _scan(path)
            shard = Shard(
                path, int(entry["samples"]), entry.get("splits"), offset, entry.get("bytes")
            )
            shards.append(shard)
            offset += shard.samples
        modalities = list((index or {}).get("modalities", []))
        return cls(str(spec), shards, index, modalities)

    def __len__(self) -> int:
        return sum(s.samples for s in self.shards)

    def count(self, split: str | None = None) -> int:
        """Samples in ``split`` (all if None); refuses a split the shards do not hold."""
        total = sum(s.count(split) for s in self.shards)
        if split is not None and total == 0:
            held = sorted({k for s in self.shards for k in (s.splits or {})})
            what = f"splits: {', '.join(held)}" if held else "the samples record no split"
            raise ShardError(f"{self.spec}: no samples in split {quote(split)} ({what})")
        return total

    def distinct(self, modality: str, split: str | None) -> int | None:
        """How many distinct values of ``modality`` there are (None when index.json cannot say)."""
        found = (self.index or {}).get("distinct", {}).get(modality)
        if found is None:
            return None
        return found["all"] if split is None else found["splits"].get(split, 0)

    def fingerprint(self) -> str:
        """Changes when any shard is rewritten: resumable jobs tie their saved work to it."""
        digest = hashlib.sha256()
        for shard in self.shards:
            stat = os.stat(shard.path)
            digest.update(f"{shard.path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    def texts(self, split: str | None, limit: int) -> list[str]:
        """The first ``limit`` captions of ``split`` in shard order (a tokenizer's corpus)."""
        texts: list[str] = []
        for shard in self.shards:
            if shard.count(split) == 0:
                continue
            for record in self.samples(shard):
                if record.text is not None and (split is None or record.split == split):
                    texts.append(record.text)
                    if len(texts) >= limit:
                        return texts
        return texts

    def samples(self, shard: Shard) -> Iterator[Record]:
        """The shard's samples in order, checked against its count; damage is a ``ShardError``."""
        from webdataset.tariterators import tarfile_samples

        shard.check_size()
        count = 0
        try:
            for raw in tarfile_samples([{"url": shard.path}]):
                record = Record.parse(raw, shard, count)
                count += 1
                yield record
        except ShardError:
            raise
        except READ_ERRORS as err:
            raise ShardError(
                f"{shard.path}: damaged or truncated shard (after {count} samples: "
                f"{_reason(err)}); write it again with `jointspace data shards`"
            ) from None
        if count != shard.samples:
            raise ShardError(
                f"{shard.path}: holds {count} samples where its index says {shard.samples}: "
                "the shard is truncated or was replaced; write it again (`jointspace data shards`)"
            )


@dataclass
class Record:
    """One sample as stored: key, metadata (the json), caption, and media bytes by modality."""

    key: str
    shard: str
    number: int  # its global position in the shard set
    meta: dict[str, Any]
    text: str | None
    media: dict[str, tuple[str, bytes]]  # modality → (extension, bytes)

    @classmethod
    def parse(cls, raw: dict[str, Any], shard: Shard, position: int) -> Record:
        key = str(raw["__key__"])
        meta: dict[str, Any] = {}
        if "json" in raw:
            try:
                meta = json.loads(raw["json"])
            except (ValueError, UnicodeDecodeError) as err:
                raise ShardError(f"{shard.path}, sample {quote(key)}: bad json ({err})") from None
            if not isinstance(meta, dict):
                raise ShardError(f"{shard.path}, sample {quote(key)}: the json is not an object")
        text = None
        if "txt" in raw:
            try:
                text = raw["txt"].decode("utf-8")
            except UnicodeDecodeError as err:
                reason = f"the .txt is not UTF-8 ({err.reason} at byte {err.start})"
                raise ShardError(f"{shard.path}, sample {quote(key)}: {reason}") from None
        media = {}
        for modality, extensions in EXTENSIONS.items():
            ext = next((e for e in extensions if e in raw), None)
            if ext is not None:
                media[modality] = (ext, bytes(raw[ext]))
        return cls(key, shard.path, shard.offset + position, meta, text, media)

    @property
    def id(self) -> str:
        return str(self.meta.get("id", self.key))

    @property
    def split(self) -> str | None:
        split = self.meta.get("split")
        return None if split is None else str(split)

    @property
    def label(self) -> str:
        return str(self.meta.get("label", ""))

    def lacks(self, modality: str) -> bool:
        """Whether the manifest row had no such cell (``data shards`` lists them as absent)."""
        return modality in (self.meta.get("absent") or ())

    def where(self, modality: str | None = None) -> str:
        """``SHARD, sample 'KEY'`` (``.EXT`` added for a medium) for error messages."""
        ext = f".{self.media[modality][0]}" if modality in self.media else ""
        return f"{self.shard}, sample {quote(self.key + ext)}"

    def value(self, modality: str) -> str:
        """What a manifest row held: the caption, or the media file's manifest path when known."""
        if modality == "text":
            return self.require_text()
        self.require(modality)
        files = self.meta.get("files") or {}
        return str(files.get(modality) or f"{self.key}.{self.media[modality][0]}")

    def require_text(self) -> str:
        if self.text is None:
            raise ShardError(f"{self.where()}: no .txt member (the caption)")
        return self.text

    def require(self, modality: str) -> bytes:
        if modality not in self.media:
            wanted = "|".join(EXTENSIONS.get(modality, (modality,)))
            raise ShardError(f"{self.where()}: no .{wanted} member for the {modality} tower")
        return self.media[modality][1]

    def content_key(self, modality: str) -> str:
        """Equal for equal content: the caption itself, a hash of a medium's bytes."""
        if modality == "text":
            return self.require_text()
        digest = hashlib.blake2b(self.require(modality), digest_size=16).hexdigest()
        return f"bytes:{digest}"

    def is_first(self, modality: str, split: str | None) -> bool:
        """Whether this sample is the first to hold its value (marks from ``data shards``)."""
        first = self.meta.get("first")
        if not isinstance(first, dict):
            return True  # shards from elsewhere: every sample is its own item
        return modality in first.get("all" if split is None else "split", [])


def _expand(spec: str) -> tuple[list[str], dict | None]:
    path = Path(spec)
    if path.is_dir():
        index = _read_index(path / INDEX)
        if index is not None:
            return [str(path / e["name"]) for e in index["shards"]], index
        paths = sorted(str(p) for p in path.glob("*.tar"))
        if not paths:
            raise ShardError(f"{spec}: no index.json and no .tar shards in this folder")
        return paths, None
    from webdataset.shardlists import expand_urls  # braces, and "::" between patterns

    paths = []
    for pattern in expand_urls(spec):
        matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        paths.extend(matched)
    if not paths:
        raise ShardError(f"no shards match {spec}")
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ShardError(f"shard not found: {missing[0]}{more}")
    folders = {str(Path(p).parent) for p in paths}
    index = _read_index(Path(folders.pop()) / INDEX) if len(folders) == 1 else None
    return paths, index


def _read_index(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ShardError(f"{path}: unreadable shard index ({_reason(err)})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ShardError(f"{path}: not a jointspace shard index (no format {FORMAT!r})")
    return index


def _scan(path: str) -> dict:
    """Counts of a shard without an index entry: one pass over its members, reading only json."""
    from webdataset.tariterators import base_plus_ext

    samples, splits, last = 0, {}, None
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                key, ext = base_plus_ext(member.name)
                if key is None or not member.isreg():
                    continue
                if key != last:
                    samples, last = samples + 1, key
                if ext and ext.lower() == "json":
                    handle = tar.extractfile(member)
                    meta = json.loads(handle.read()) if handle else {}
                    if isinstance(meta, dict) and "split" in meta:
                        split = str(meta["split"])
                        splits[split] = splits.get(split, 0) + 1
    except READ_ERRORS as err:
        raise ShardError(f"{path}: damaged or truncated shard ({_reason(err)})") from None
    return {"samples": samples, "splits": splits or None}


def _reason(err: BaseException) -> str:
    text = str(err.args[0]) if err.args else ""
    text = text.split(" @ ")[0].strip()  # WebDataset appends the stream object's repr
    return text or type(err).__name__
