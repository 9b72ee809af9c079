"""Training logs: ``metrics.jsonl`` as written, mirrored to ``metrics.csv`` for spreadsheets."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from jointspace.atomic import atomic_path
from jointspace.errors import ArtifactError


def read_log(path: Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file; evaluations are ``{"step", "eval": {...}}``.

    A last line cut short by a killed write is dropped; damage elsewhere is an ArtifactError.
    """
    try:
        lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: the write never finished
                break
            raise ArtifactError(f"{path}, line {number}: damaged (not JSON)") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise ArtifactError(f"{path}, line {number}: damaged (no integer 'step')")
        records.append(record)
    return records


def write_csv(jsonl: Path, csv: Path) -> Path:
    """One row per step: training columns plus ``val/<metric>`` where the step was evaluated."""
    rows: dict[int, dict] = {}
    for record in read_log(jsonl):
        row = rows.setdefault(record["step"], {"step": record["step"]})
        evaluation = record.get("eval", {})
        row.update({k: v for k, v in record.items() if k != "eval"})
        row.update({f"val/{k}": v for k, v in evaluation.items()})
    with atomic_path(csv) as tmp:
        pd.DataFrame(list(rows.values())).to_csv(tmp, index=False)
    return csv
