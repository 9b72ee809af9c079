"""Training logs: ``metrics.jsonl`` as written, mirrored to ``metrics.csv`` for spreadsheets."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from jointspace.atomic import atomic_path


def read_log(path: Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file; evaluations are ``{"step", "eval": {...}}``."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
