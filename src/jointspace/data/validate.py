"""Up-front manifest checks: columns first (always fatal), then every row."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from jointspace.data.audio import AudioError, check_audio
from jointspace.data.image import ImageError, load_image
from jointspace.data.manifest import (
    FILE_COLUMNS,
    KNOWN_COLUMNS,
    META_PREFIX,
    MODALITY_COLUMNS,
    Manifest,
    ManifestError,
    Problem,
    is_absent,
    quote,
)

PROGRESS_MIN_FILES = 500


def check_columns(
    path: Path, columns: list[str], rows: list[dict[str, str]], required: Sequence[str]
) -> None:
    """Refuse unknown columns, missing required columns and empty manifests."""
    for column in columns:
        if column not in KNOWN_COLUMNS and not column.startswith(META_PREFIX):
            raise ManifestError(
                f"{path}: unknown column {quote(column)} (known: {', '.join(KNOWN_COLUMNS)}; "
                f"prefix extra columns with '{META_PREFIX}')"
            )
    missing = [c for c in required if c not in columns]
    if missing:
        listed = ", ".join(columns)
        raise ManifestError(f"{path}: missing column {quote(missing[0])} (columns: {listed})")
    if not any(c in columns for c in MODALITY_COLUMNS):
        raise ManifestError(
            f"{path}: no modality column (need one of {', '.join(MODALITY_COLUMNS)})"
        )
    if not rows:
        raise ManifestError(f"{path}: the manifest has no rows")


def find_problems(
    manifest: Manifest, required: Sequence[str] = (), check_files: bool = True
) -> list[Problem]:
    """Every row-level problem, in row order.

    An empty modality cell means the row lacks that modality; a row needs at least one of the
    ``required`` modalities (every modality column when none is named).
    """
    problems = _id_problems(manifest) + _absence_problems(manifest, required)
    for column in FILE_COLUMNS:
        if column in manifest.columns:
            problems += _file_problems(manifest, column, check_files)
    return sorted(problems, key=lambda p: p.row)


def _absence_problems(manifest: Manifest, required: Sequence[str]) -> list[Problem]:
    wanted = [m for m in required if m in MODALITY_COLUMNS] or manifest.modalities
    wanted = [m for m in wanted if m in manifest.columns]
    if len(wanted) == 1:  # the one modality a row must have: named as the column at fault
        (only,) = wanted
        message = "empty text" if only == "text" else f"empty {only} path"
        return [
            Problem(n, only, message)
            for n, row in enumerate(manifest.rows, start=1)
            if is_absent(row[only])
        ]
    return [
        Problem(n, None, f"no modality: {', '.join(wanted)} are all empty")
        for n, row in enumerate(manifest.rows, start=1)
        if wanted and all(is_absent(row[m]) for m in wanted)
    ]


def _id_problems(manifest: Manifest) -> list[Problem]:
    first: dict[str, int] = {}
    problems = []
    for number, row in enumerate(manifest.rows, start=1):
        key = row["id"]
        message = id_problem(key)
        if message is None and key in first:
            message = f"duplicate id {quote(key)} (first used in row {first[key]})"
        first.setdefault(key, number)
        if message:
            problems.append(Problem(number, "id", message))
    return problems


def id_problem(key: str) -> str | None:
    """Why ``key`` cannot be an item id (index, ``/media`` URLs), or None when it can."""
    if not key.strip():
        return "empty id"
    bad = next((c for c in key if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        return f"id {quote(key)} contains the control character U+{ord(bad):04X}"
    if ".." in key.split("/"):
        return f"id {quote(key)} has a '..' path segment"
    return None


def _file_problems(manifest: Manifest, column: str, check_files: bool) -> list[Problem]:
    verdicts: dict[str, str | None] = {}
    values = [row[column] for row in manifest.rows]
    unique = list(dict.fromkeys(v for v in values if not is_absent(v)))
    show = len(unique) >= PROGRESS_MIN_FILES
    for value in tqdm(
        unique, desc=f"checking {column}s", leave=False, disable=None if show else True
    ):
        verdicts[value] = _check_file(manifest.resolve(value), column) if check_files else None
    problems = []
    for number, value in enumerate(values, start=1):
        message = None if is_absent(value) else verdicts[value]  # absence: _absence_problems
        if message:
            problems.append(Problem(number, column, message))
    return problems


def _check_file(path: Path, column: str) -> str | None:
    if not path.is_file():
        return f"file not found: {path}"
    try:
        load_image(path) if column == "image" else check_audio(path)
    except (ImageError, AudioError) as err:
        return err.reason
    return None
