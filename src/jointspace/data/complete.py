"""Rows holding every one of some modalities: what a program needing all of them may use."""

from __future__ import annotations

from collections.abc import Sequence

from jointspace.data.manifest import Manifest, is_absent


def rows_having(manifest: Manifest, modalities: Sequence[str]) -> tuple[Manifest, int]:
    """``manifest`` without the rows whose cell is empty (absent) in one of ``modalities``, and
    how many rows that left out (0: ``manifest`` itself)."""
    wanted = [m for m in modalities if m in manifest.columns]
    kept = [row for row in manifest.rows if not any(is_absent(row[m]) for m in wanted)]
    if len(kept) == len(manifest.rows):
        return manifest, 0
    return Manifest(manifest.path, kept, manifest.columns, manifest.skipped), len(
        manifest.rows
    ) - len(kept)


def left_out_note(count: int, modalities: Sequence[str]) -> str:
    """``"N rows without <a> or <b> left out"``, the line programs print and log."""
    return f"{count} rows without {' or '.join(modalities)} left out"
