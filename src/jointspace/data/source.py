"""Distinct items of one modality, streamed from a manifest or from shards, for embed and index.

``open_source(spec, modality)`` reads ``--data`` either way; consumers iterate ``items()`` (first
holder of each value first, as ``models.embedding.distinct_items`` orders a manifest) and
never hold more than the batch they work on. From shards memory stays flat: ``data shards``
marks each value's first holder, so nothing seen needs remembering.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jointspace.data.builtin import load_manifest
from jointspace.data.manifest import FILE_COLUMNS, Manifest
from jointspace.data.shard_dataset import raw_input
from jointspace.data.shard_set import Record, ShardSet, is_shard_spec


@dataclass
class Item:
    """One distinct item: its id, the manifest value (caption or media path), label and split."""

    id: str
    value: str
    label: str
    split: str
    source: Any  # a manifest's resolved path or text, or the shard record (decoded on demand)

    def input(self, modality: str) -> Any:
        """What the tower takes: text, a path, or (from shards) a decoded image / audio bytes."""
        return raw_input(self.source, modality) if isinstance(self.source, Record) else self.source


class ItemSource:
    """Where items come from: ``name`` for messages and ``info()`` for the index it feeds."""

    name: str
    manifest: Manifest | None = None  # set when items are a manifest's rows

    def items(self, modality: str) -> Iterator[Item]:
        raise NotImplementedError

    def count(self, modality: str) -> int | None:
        """How many distinct items ``items`` yields, when known without reading them."""
        raise NotImplementedError

    def fingerprint(self, modality: str) -> str:
        """Changes whenever the items would: saved partial work is tied to it."""
        raise NotImplementedError

    def info(self) -> dict[str, str]:
        raise NotImplementedError


class ManifestSource(ItemSource):
    """A validated manifest's distinct values (its rows are already in memory)."""

    def __init__(self, manifest: Manifest):
        self.manifest, self.name = manifest, str(manifest.path)

    def _first_rows(self, modality: str) -> list[dict[str, str]]:
        self.manifest.column(modality)  # a missing column names the file
        first: dict[str, dict[str, str]] = {}
        for row in self.manifest.rows:
            first.setdefault(row[modality], row)
        return list(first.values())

    def items(self, modality: str) -> Iterator[Item]:
        for row in self._first_rows(modality):
            value = row[modality]
            raw = self.manifest.resolve(value) if modality in FILE_COLUMNS else value
            yield Item(row.get("id", ""), value, row.get("label", ""), row.get("split", ""), raw)

    def count(self, modality: str) -> int:
        return len(self._first_rows(modality))

    def fingerprint(self, modality: str) -> str:
        values = [row[modality] for row in self._first_rows(modality)]
        digest = hashlib.sha256("\n".join(values).encode())
        return f"{len(values)} {digest.hexdigest()}"

    def info(self) -> dict[str, str]:
        return {"manifest": str(self.manifest.path.resolve())}


class ShardSource(ItemSource):
    """Shards' samples of one split (all if None), each value's first holder only."""

    def __init__(self, shards: ShardSet, split: str | None = None):
        self.shards, self.split, self.name = shards, split, shards.spec
        if split is not None:
            shards.count(split)  # refuses a split the shards do not hold

    def items(self, modality: str) -> Iterator[Item]:
        for shard in self.shards.shards:
            if shard.count(self.split) == 0:
                continue
            for record in self.shards.samples(shard):
                if self.split is not None and record.split != self.split:
                    continue
                if record.is_first(modality, self.split):
                    value = record.value(modality)
                    yield Item(record.id, value, record.label, record.split or "", record)

    def count(self, modality: str) -> int | None:
        return self.shards.distinct(modality, self.split)

    def fingerprint(self, modality: str) -> str:
        return f"shards {self.shards.fingerprint()} {self.split}"

    def info(self) -> dict[str, str]:
        # No "manifest": media in tars are not files, so /media answers 404 for these items.
        return {"shards": self.shards.spec}


def open_source(
    spec: str, modality: str, *, split: str | None = None, skip_bad: bool = False
) -> ItemSource:
    """``--data`` as items: shards (pattern or folder) or a manifest (path or ``builtin:NAME``)."""
    if is_shard_spec(spec):
        return ShardSource(ShardSet.open(spec), split)
    return ManifestSource(load_manifest(spec, [modality], split=split, skip_bad=skip_bad))
