"""Byte-identical media files shared between splits (test images that are also training images)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations

from jointspace.data.manifest import FILE_COLUMNS, Manifest

CHUNK = 1 << 20
MAX_EXAMPLES = 3


@dataclass
class SplitOverlap:
    """Files of split ``b`` byte-identical to files of split ``a``: count and a few examples."""

    column: str
    a: str
    b: str
    count: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)

    def describe(self) -> str:
        shown = "; ".join(f"{x} = {y}" for x, y in self.examples)
        return (
            f"{self.count} {self.column} file{'s' if self.count != 1 else ''} in split "
            f"'{self.b}' byte-identical to files in split '{self.a}' (e.g. {shown})"
        )


def file_digests(manifest: Manifest, column: str) -> dict[str, str]:
    """SHA-256 of each distinct readable file of ``column``, streamed in 1 MiB chunks."""
    digests = {}
    for value in dict.fromkeys(v for v in manifest.column(column) if v.strip()):
        digest = hashlib.sha256()
        try:
            with manifest.resolve(value).open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
        except OSError:
            continue  # missing or unreadable files are reported among the row problems
        digests[value] = digest.hexdigest()
    return digests


def split_overlaps(
    manifest: Manifest, digests: dict[str, dict[str, str]] | None = None
) -> list[SplitOverlap]:
    """For every pair of splits and file column, the files they share by content.

    One pass over the rows, keyed by content hash: linear in the number of files.
    """
    if "split" not in manifest.columns:
        return []
    found = []
    for column in (c for c in FILE_COLUMNS if c in manifest.columns):
        hashes = (digests or {}).get(column) or file_digests(manifest, column)
        # content hash → split → first file value seen there
        where: dict[str, dict[str, str]] = defaultdict(dict)
        for row in manifest.rows:
            digest = hashes.get(row[column])
            if digest is not None:
                where[digest].setdefault(row["split"], row[column])
        pairs: dict[tuple[str, str], SplitOverlap] = {}
        for by_split in where.values():
            for a, b in combinations(sorted(by_split, key=_split_order), 2):
                overlap = pairs.setdefault((a, b), SplitOverlap(column, a, b))
                overlap.count += 1
                if len(overlap.examples) < MAX_EXAMPLES:
                    overlap.examples.append((by_split[b], by_split[a]))
        found += sorted(pairs.values(), key=lambda o: (_split_order(o.a), _split_order(o.b)))
    return found


def _split_order(name: str) -> tuple[int, str]:
    order = {"train": 0, "val": 1, "test": 2}
    return order.get(name, 3), name
