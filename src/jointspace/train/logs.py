"""Training logs: ``metrics.jsonl`` as written, mirrored to ``metrics.csv`` for spreadsheets."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from jointspace.atomic import atomic_path, disk_full, is_disk_full, write_text_atomic
from jointspace.errors import ArtifactError, JointspaceError
from jointspace.train.trackers import Tracker, open_trackers, run_params, scalars

log = logging.getLogger("jointspace")


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


class RunLog:
    """A run's ``metrics.jsonl``: appended a line per record, mirrored to ``metrics.csv`` and
    to the experiment trackers ``track`` opened (train/trackers.py)."""

    def __init__(self, path: Path):
        self.path = path
        self.trackers: list[Tracker] = []

    def track(self, names: list[str], *, resumed: bool, train: Any = None) -> None:
        """Open the trackers ``names`` (``train.log_to``); each first gets what the log holds."""
        if names:
            history = read_log(self.path) if self.path.exists() else []
            params = run_params(self.path.parent, train)
            self.trackers = open_trackers(names, self.path.parent, history, params, resumed)

    def append(self, record: dict[str, Any]) -> None:
        try:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as err:
            if is_disk_full(err):
                raise disk_full(self.path) from None
            raise
        values = scalars(record)
        for tracker in self.trackers:
            tracker.log(record["step"], values)

    def close(self, *, quiet: bool) -> None:
        """Mirror to CSV and close the trackers; ``quiet``: the run failed (only warn)."""
        self.write_csv(quiet=quiet)
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            try:
                tracker.close(failed=quiet)
            except JointspaceError as err:
                if not quiet:
                    raise
                log.warning("%s", err)

    def truncate(self, step: int) -> None:
        """Drop lines after ``step`` (a resumed run repeats them) and a last line cut short."""
        if not self.path.exists():
            return
        kept = [r for r in read_log(self.path) if r["step"] <= step]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write_csv(self, *, quiet: bool) -> None:
        """Mirror to CSV; ``quiet`` (while another error propagates) only warns on failure."""
        if not self.path.exists():
            return
        try:
            write_csv(self.path, self.path.with_suffix(".csv"))
        except (OSError, JointspaceError) as err:
            if not quiet:  # while another error propagates, do not replace it with this one
                raise
            log.warning("could not update %s: %s", self.path.with_suffix(".csv"), err)
