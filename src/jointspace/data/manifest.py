"""Manifests: one row per paired sample, one column per modality, in CSV, JSONL or Parquet."""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from jointspace.errors import JointspaceError

MODALITY_COLUMNS = ("text", "image", "audio")  # an empty (or blank) cell: the row lacks it
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
# Every command named here has a --skip-bad flag (tests/cli/test_cli_data.py checks it).
SKIP_HINT = "to skip bad rows instead, pass --skip-bad to train, eval, embed or data validate"
MAX_LINE_BYTES = 16 << 20  # one JSONL row; longer lines are refused rather than parsed
BINARY_SNIFF = 8192
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
        column = f", column {quote(self.column)}" if self.column else ""
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

    def has(self, index: int, modality: str) -> bool:
        """Whether row ``index`` holds ``modality`` (an empty cell means absent)."""
        return not is_absent(self.rows[index][modality])

    def column(self, name: str) -> list[str]:
        if name not in self.columns:
            listed = ", ".join(self.columns)
            raise ManifestError(f"{self.path}: no column {quote(name)} (columns: {listed})")
        return [row[name] for row in self.rows]

    def splits(self) -> list[str]:
        return sorted({row["split"] for row in self.rows}) if "split" in self.columns else []

    def split(self, name: str) -> Manifest:
        """Only the rows of split ``name``."""
        if "split" not in self.columns:
            raise ManifestError(f"{self.path}: no 'split' column, so no split {quote(name)}")
        rows = [row for row in self.rows if row["split"] == name]
        if not rows:
            raise ManifestError(
                f"{self.path}: no rows in split {quote(name)} (splits: {', '.join(self.splits())})"
            )
        return Manifest(self.path, rows, self.columns, self.skipped)


def is_absent(value: str) -> bool:
    """An empty or blank modality cell: the row has no such input (not an error)."""
    return not value.strip()


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
    return "\n".join([head, *lines, SKIP_HINT])


def _read_rows(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ManifestError(
            f"{path}: unsupported manifest suffix {quote(path.suffix)} (use {', '.join(SUFFIXES)})"
        )
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    if kind == "jsonl":
        return _read_jsonl(path)
    if kind == "csv":
        return _read_csv(path)
    return _read_parquet(path)


def _read_csv(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    with path.open("rb") as handle:
        head = handle.read(BINARY_SNIFF)
    if b"\0" in head:
        raise ManifestError(f"{path}: binary data, not CSV text")
    try:
        header = next(csv.reader([head.decode("utf-8-sig", "replace").partition("\n")[0]]), [])
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig"
        )
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, ValueError) as err:
        raise ManifestError(f"{path}: cannot read CSV ({_first_line(err)})") from err
    _refuse_duplicates(path, [c.strip() for c in header])
    columns = [str(c) for c in frame.columns]
    records = frame.to_dict(orient="records")
    return [{str(k): v for k, v in r.items()} for r in records], columns


def _read_parquet(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        _refuse_duplicates(path, names)
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise ManifestError(f"{path}: cannot read Parquet ({_first_line(err)})") from err
    columns = [str(c) for c in table.column_names]
    rows = []
    for number, record in enumerate(table.to_pylist(), start=1):
        rows.append({c: _value(path, number, c, record[c]) for c in columns})
    return rows, columns


def _read_jsonl(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    records, columns = [], {}
    with path.open("rb") as handle:
        for number, raw in enumerate(_lines(path, handle), start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                where = f"{path}, line {number}"
                reason = f"not UTF-8 text ({err.reason} at byte {err.start})"
                raise ManifestError(f"{where}: {reason}") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError as err:
                raise ManifestError(f"{path}, line {number}: not valid JSON ({err.msg})") from err
            except RecursionError:
                raise ManifestError(f"{path}, line {number}: JSON nested too deeply") from None
            except _DuplicateKey as err:
                key = quote(str(err))
                raise ManifestError(f"{path}, line {number}: key {key} given twice") from None
            if not isinstance(record, dict):
                raise ManifestError(f"{path}, line {number}: expected a JSON object per line")
            columns.update(dict.fromkeys(record))
            records.append((number, record))
    rows = [{c: _value(path, n, c, r.get(c), "line") for c in columns} for n, r in records]
    return rows, list(columns)


def _lines(path: Path, handle) -> Iterator[bytes]:
    while raw := handle.readline(MAX_LINE_BYTES + 1):
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise ManifestError(f"{path}: a line longer than {MAX_LINE_BYTES} bytes")
        if b"\0" in raw:
            raise ManifestError(f"{path}: binary data, not JSON lines")
        yield raw


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return record


def _refuse_duplicates(path: Path, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ManifestError(f"{path}: column {quote(name)} appears more than once")
        seen.add(name)


def _value(path: Path, number: int, column: str, value: object, unit: str = "row") -> str:
    """A cell as a string: numbers as written; media structs/bytes become files; else refused."""
    if isinstance(value, str):
        return value
    where = f"{path}, {unit} {number}, column {quote(column)}"
    if column in FILE_COLUMNS:
        from jointspace.data.embedded import media_cell

        return media_cell(value, path, where)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    kinds = {dict: "an object", list: "a list", tuple: "a list", bytes: "bytes", bytearray: "bytes"}
    if type(value) in kinds:
        raise ManifestError(f"{where}: expected text or a number, got {kinds[type(value)]}")
    return str(value)  # numbers, dates: as written


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def quote(text: str, limit: int = 60) -> str:
    """``'text'`` for messages: control characters escaped, long text cut, never a repr."""
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text[:limit])
    return f"'{shown}{'…' if len(text) > limit else ''}'"
