"""Experiment trackers: every ``metrics.jsonl`` record mirrored to TensorBoard and/or MLflow."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import yaml

from jointspace.atomic import write_text_atomic
from jointspace.config import ConfigError, to_dict
from jointspace.errors import JointspaceError, MissingPackageError

TRACKERS = ("tensorboard", "mlflow")
TENSORBOARD_DIR = "tensorboard"  # RUN/tensorboard/events.out.tfevents.*
MLFLOW_DB = "mlflow.db"  # RUN/mlflow.db: MLflow's SQLite store, unless MLFLOW_TRACKING_URI is set
MLFLOW_RUN = "mlflow_run.json"  # the store and run id a resumed run continues
MLFLOW_BATCH = 1000  # MLflow's limit on metrics per log_batch call (100 for params)


class TrackerError(JointspaceError):
    """A tracker could not write (disk, store): the message names it and the path."""


def check_names(names: list[str], where: str = "train.log_to") -> list[str]:
    """``names`` if every one is a known tracker, else a ConfigError naming the stranger."""
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"{where}: unknown tracker {name!r}; known: {', '.join(TRACKERS)}")
    return list(dict.fromkeys(names))


def parse_log_to(text: str) -> list[str]:
    """``--log-to tensorboard,mlflow`` as a checked list (empty text: none)."""
    return check_names([n.strip() for n in text.split(",") if n.strip()], "--log-to")


def scalars(record: dict[str, Any]) -> list[tuple[str, float]]:
    """A metrics.jsonl record as (name, value): training keys as they are, evaluations as
    ``val/<metric>`` (as in metrics.csv); anything not a number is left out."""
    pairs = [(k, v) for k, v in record.items() if k not in ("step", "eval")]
    pairs += [(f"val/{k}", v) for k, v in record.get("eval", {}).items()]
    return [(k, float(v)) for k, v in pairs if isinstance(v, int | float)]


def mlflow_name(name: str) -> str:
    """A metric name MLflow accepts: ``@`` spelt ``_at_`` (``R@1`` → ``R_at_1``), other
    characters outside letters, digits, ``_ - . / :`` and space as ``_``."""
    return re.sub(r"[^/\w.\- :]", "_", name.replace("@", "_at_"))


def flat_params(tree: Any, prefix: str = "") -> dict[str, str]:
    """A config as dotted keys (``train.lr``, ``objectives.0.name``) and string values."""
    if isinstance(tree, dict | list):
        items = tree.items() if isinstance(tree, dict) else enumerate(tree)
        flat: dict[str, str] = {}
        for key, value in items:
            flat.update(flat_params(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat if flat or not prefix else {prefix: json.dumps(tree)}
    return {prefix: "null" if tree is None else str(tree)}


class Tracker(Protocol):
    def log(self, step: int, values: list[tuple[str, float]]) -> None: ...

    def close(self, failed: bool = False) -> None: ...


@contextlib.contextmanager
def _failing(name: str, path: Path | str) -> Iterator[None]:
    """Any failure inside (disk, store, package) as one TrackerError line naming the path."""
    try:
        yield
    except JointspaceError:
        raise
    except Exception as err:  # the trackers raise their own types; the user needs one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrackerError(f"{name}: could not write {path}: {first}") from None


def _missing(name: str, install: str) -> MissingPackageError:
    return MissingPackageError(
        f"train.log_to: {name} needs `pip install {install}` (or drop {name} from log_to)"
    )


class TensorBoardTracker:
    """Scalars in ``RUN/tensorboard``; a resumed run's writer purges the steps it repeats."""

    def __init__(self, run_dir: Path, history: list[dict], params: dict[str, str]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", "tensorboard") from None
        self.path = run_dir / TENSORBOARD_DIR
        existing = self.path.is_dir() and any(self.path.glob("events.out.tfevents.*"))
        last = history[-1]["step"] if history else 0
        with _failing("tensorboard", self.path):
            # purge_step hides, in TensorBoard, the events a killed run wrote past `last`.
            self.writer = SummaryWriter(
                str(self.path), purge_step=last + 1 if existing else None, flush_secs=10
            )
            if not existing:
                config = yaml.safe_dump(params, sort_keys=False)
                self.writer.add_text("config", f"```\n{config}```", 0)
                for record in history:
                    self.log(record["step"], scalars(record))

    def log(self, step: int, values: list[tuple[str, float]]) -> None:
        with _failing("tensorboard", self.path):
            for name, value in values:
                self.writer.add_scalar(name, value, step)

    def close(self, failed: bool = False) -> None:
        with _failing("tensorboard", self.path):
            self.writer.close()


class MlflowTracker:
    """One MLflow run per jointspace run (id in ``RUN/mlflow_run.json``); a resumed run skips
    the steps the store already holds, since MLflow cannot delete logged values."""

    def __init__(self, run_dir: Path, history: list[dict], params: dict[str, str], resumed: bool):
        try:
            from mlflow.entities import Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise _missing("mlflow", "mlflow-skinny sqlalchemy alembic") from None
        record_path = run_dir / MLFLOW_RUN
        recorded: dict[str, Any] = {}
        if resumed and record_path.is_file():
            with _failing("mlflow", record_path):  # damaged: one line naming the file
                recorded = dict(json.loads(record_path.read_text()))
        # The default store is recorded as null, not as a path: the run directory may move.
        default = f"sqlite:///{(run_dir / MLFLOW_DB).resolve()}"
        chosen = recorded.get("tracking_uri") if recorded else os.environ.get("MLFLOW_TRACKING_URI")
        self.uri = chosen or default
        with _failing("mlflow", self.uri), _quiet_mlflow():
            if self.uri == default:  # fail now, not after MLflow's minute of connection retries
                sqlite3.connect(run_dir / MLFLOW_DB).execute("pragma schema_version").close()
            self.client = MlflowClient(tracking_uri=self.uri)
            run = None
            if recorded.get("run_id"):
                run = self.client.get_run(recorded["run_id"])
            if run is None:
                run = self._new_run(run_dir)
                stored = {"tracking_uri": chosen or None, "run_id": run.info.run_id}
                write_text_atomic(record_path, json.dumps(stored) + "\n")
                pairs = [Param(mlflow_name(k)[:250], v[:6000]) for k, v in params.items()]
                for start in range(0, len(pairs), 100):
                    self.client.log_batch(run.info.run_id, params=pairs[start : start + 100])
            else:
                self.client.update_run(run.info.run_id, status="RUNNING")
            self.run_id = run.info.run_id
            self.logged = {
                key: max(m.step for m in self.client.get_metric_history(self.run_id, key))
                for key in run.data.metrics
            }
        for entry in history:  # what metrics.jsonl holds and the store does not (yet)
            self.log(entry["step"], scalars(entry))

    def _new_run(self, run_dir: Path):
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "jointspace"
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(name)
        )
        return self.client.create_run(experiment_id, run_name=run_dir.resolve().name)

    def log(self, step: int, values: list[tuple[str, float]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(mlflow_name(k), v, now, step)
            for k, v in values
            if step > self.logged.get(mlflow_name(k), -1)
        ]
        with _failing("mlflow", self.uri):
            for start in range(0, len(metrics), MLFLOW_BATCH):
                self.client.log_batch(self.run_id, metrics=metrics[start : start + MLFLOW_BATCH])
        for metric in metrics:
            self.logged[metric.key] = step

    def close(self, failed: bool = False) -> None:
        with _failing("mlflow", self.uri):
            self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    # Creating the SQLite store logs its schema migrations at INFO (alembic, mlflow): noise here.
    loggers = [logging.getLogger(n) for n in ("alembic", "mlflow")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def run_params(run_dir: Path, train: Any) -> dict[str, str]:
    """The run's config flattened: ``RUN/config.yaml`` where written, else the train section."""
    path = run_dir / "config.yaml"
    tree = yaml.safe_load(path.read_text()) if path.is_file() else {"train": to_dict(train)}
    return flat_params(tree)


def open_trackers(
    names: list[str], run_dir: Path, history: list[dict], params: dict[str, str], resumed: bool
) -> list[Tracker]:
    """The trackers ``names`` asks for, each holding ``history`` (metrics.jsonl as it stands)."""
    opened: list[Tracker] = []
    try:
        for name in check_names(names):
            if name == "tensorboard":
                opened.append(TensorBoardTracker(run_dir, history, params))
            else:
                opened.append(MlflowTracker(run_dir, history, params, resumed))
    except BaseException:
        for tracker in opened:
            with contextlib.suppress(Exception):
                tracker.close(failed=True)
        raise
    return opened
