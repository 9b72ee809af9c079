"""Manifests: one row per paired sample, one column per modality, in CSV, JSONL or Parquet."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from jointspace.errors import JointspaceError

MODALITY_COLUMNS = ("text", "image", "audio")
FILE_COLUMNS = ("image", "audio")  # cells are paths, relative to the manifest
KNOWN_COLUMNS = ("id", "text", "image", "audio", "label", "split")
META_PREFIX = "meta_"
SUFFIXES = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
MAX_LISTED = 10
log = logging.getLogger("jointspace")


class ManifestError(JointspaceError, ValueError):
    """A manifest that cannot be used; the message names the file, row and column."""


@dataclass
class Problem:
    """One bad row: 1-based data row number, the column at fault and what is wrong."""

    row: int
    column: str | None
    message: str

    def describe(self, path: Path | str) -> str:
        """``"FILE, row N, column 'C': message"`` for error reports and logs."""
        column = f", column {self.column!r}" if self.column else ""
        return f"{path}, row {self.row}{column}: {self.message}"


@dataclass
class Manifest:
    """Validated rows (every value a string) and the file they came from."""

    path: Path
    rows: list[dict[str, str]]
    columns: list[str]
    skipped: list[Problem] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def modalities(self) -> list[str]:
        return [m for m in MODALITY_COLUMNS if m in self.columns]

    def __len__(self) -> int:
        return len(self.rows)

    def resolve(self, value: str) -> Path:
        """A file column's value as a path (relative values are relative to the manifest)."""
        return self.root / value

    def column(self, name: str) -> list[str]:
        if name not in self.columns:
            raise ManifestError(f"{self.path}: no column {name!r} (columns: {self.columns})")
        return [row[name] for row in self.rows]

    def splits(self) -> list[str]:
        return sorted({row["split"] for row in self.rows}) if "split" in self.columns else []

    def split(self, name: str) -> Manifest:
        """Only the rows of split ``name``."""
        if "split" not in self.columns:
            raise ManifestError(f"{self.path}: no 'split' column, so no split {name!r}")
        rows = [row for row in self.rows if row["split"] == name]
        if not rows:
            raise ManifestError(
                f"{self.path}: no rows in split {name!r} (splits: {', '.join(self.splits())})"
            )
        return Manifest(self.path, rows, self.columns, self.skipped)


def read_manifest(
    path: str | Path,
    *,
    required: Sequence[str] = (),
    skip_bad: bool = False,
    check_files: bool = True,
) -> Manifest:
    """Read and validate a manifest; bad rows raise, or are skipped and reported with skip_bad."""
    from jointspace.data.validate import find_problems

    manifest = open_manifest(path, required=required)
    problems = find_problems(manifest, required, check_files)
    if not problems:
        return manifest
    if not skip_bad:
        raise ManifestError(_problem_report(path, problems))
    return _skip(manifest, problems)


def open_manifest(path: str | Path, *, required: Sequence[str] = ()) -> Manifest:
    """Parse a manifest and check its columns, leaving rows unchecked (for inspection)."""
    from jointspace.data.validate import check_columns

    path = Path(path)
    rows, columns = _read_rows(path)
    if "id" not in columns:
        columns = ["id", *columns]
        rows = [{"id": str(i), **row} for i, row in enumerate(rows)]
    check_columns(path, columns, rows, required)
    return Manifest(path, rows, columns)


def _skip(manifest: Manifest, problems: list[Problem]) -> Manifest:
    bad = {p.row for p in problems}
    for problem in problems:
        log.warning("skipping %s", problem.describe(manifest.path))
    kept = [row for number, row in enumerate(manifest.rows, start=1) if number not in bad]
    total = len(manifest.rows)
    log.warning("skipped %d of %d rows in %s", len(bad), total, manifest.path)
    if not kept:
        raise ManifestError(f"{manifest.path}: all {total} rows are bad; nothing left to use")
    return Manifest(manifest.path, kept, manifest.columns, problems)


def _problem_report(path: Path, problems: list[Problem]) -> str:
    lines = [p.describe(path) for p in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"... and {len(problems) - MAX_LISTED} more")
    head = f"{len(problems)} bad row{'s' if len(problems) > 1 else ''} in {path}:"
    return "\n".join([head, *lines, "pass --skip-bad to report and skip bad rows"])


def _read_rows(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ManifestError(
            f"{path}: unsupported manifest suffix {path.suffix!r} (use {', '.join(SUFFIXES)})"
        )
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    if kind == "jsonl":
        return _read_jsonl(path)
    try:
        if kind == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
        else:
            frame = pd.read_parquet(path)
    except Exception as err:  # pandas/pyarrow raise many types; all mean "cannot parse"
        raise ManifestError(f"{path}: cannot read {kind}: {err}") from err
    columns = [str(c) for c in frame.columns]
    records = frame.to_dict(orient="records")
    return [{str(k): _cell(v) for k, v in r.items()} for r in records], columns


def _read_jsonl(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    rows, columns = [], {}
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: tolerate a byte-order mark
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{path}, line {number}: not valid JSON ({err.msg})") from err
        if not isinstance(record, dict):
            raise ManifestError(f"{path}, line {number}: expected a JSON object per line")
        columns.update(dict.fromkeys(record))
        rows.append(record)
    return [{c: _cell(r.get(c)) for c in columns} for r in rows], list(columns)


def _cell(value: object) -> str:
    if isinstance(value, str):
        return value
    # Parquet brings None, NaN, pd.NA and NaT for missing cells; all mean "empty".
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    return str(value)
