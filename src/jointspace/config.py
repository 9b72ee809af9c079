"""Experiment configuration: dataclasses that round-trip to YAML and JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from jointspace.errors import JointspaceError

T = TypeVar("T")


class ConfigError(JointspaceError, ValueError):
    """A configuration value or key is wrong; the message names where."""


@dataclass
class DataConfig:
    """Where the paired data comes from and how rows are split."""

    manifest: str = "builtin:digits"
    modalities: list[str] = field(default_factory=lambda: ["text", "image"])
    train_split: str | None = "train"
    val_split: str | None = "val"
    test_split: str | None = "test"
    skip_bad: bool = False
    augment: bool = True


@dataclass
class PartConfig:
    """A registered part (encoder tower, objective, …): its name plus keyword parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TowerConfig(PartConfig):
    """An encoder tower; ``lock`` freezes all but its projection head (LiT), ``unlock_last``
    then trains its last N layers again."""

    lock: bool = False
    unlock_last: int = 0


@dataclass
class ObjectiveConfig(PartConfig):
    """An objective and its weight in the total loss (every term is logged on its own)."""

    weight: float = 1.0


@dataclass
class ModelConfig:
    """The joint model: one tower per modality projected to ``embed_dim``."""

    embed_dim: int = 64
    towers: dict[str, TowerConfig] = field(
        default_factory=lambda: {"text": TowerConfig("transformer"), "image": TowerConfig("cnn")}
    )
    init_temperature: float = 0.07


@dataclass
class TrainConfig:
    """Optimisation, schedule, checkpointing and evaluation cadence."""

    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 20
    min_lr_ratio: float = 0.05
    grad_clip: float | None = 1.0
    precision: str = "fp32"
    seed: int = 0
    log_every: int = 10
    eval_every: int | None = None
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    progress: bool = True
    device: str = "auto"
    num_workers: int = 0
    # Frozen towers' features: "auto" ($JOINTSPACE_CACHE/features), a directory, or null (off).
    feature_cache: str | None = "auto"


@dataclass
class EvalConfig:
    """How retrieval is scored: which rows count as relevant and which cut-offs to report."""

    relevance: str = "pairs"
    ks: list[int] = field(default_factory=lambda: [1, 5, 10])
    batch_size: int = 256


@dataclass
class RerankConfig:
    """The optional second stage: a cross-modal matcher that re-scores the top ``candidates``."""

    width: int = 128
    depth: int = 2
    heads: int = 4
    dropout: float = 0.1
    epochs: int = 15
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 20
    negatives: int = 7  # hard negatives per query in each training step
    pool: int = 32  # ... drawn from the bi-encoder's best non-matches up to this rank
    candidates: int = 20  # bi-encoder results re-scored per query (validation and test)
    seed: int = 0
    progress: bool = True


@dataclass
class ExperimentConfig:
    """Everything one training run needs; ``to_yaml``/``from_yaml`` round-trip exactly."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objectives: list[ObjectiveConfig] = field(default_factory=lambda: [ObjectiveConfig("clip")])
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExperimentConfig:
        if "objective" in raw and "objectives" not in raw:  # the single-objective form
            raw = {**raw, "objectives": [raw["objective"]]}
            del raw["objective"]
        return from_dict(cls, raw)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> ExperimentConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        try:
            return cls.from_dict(raw)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err


def to_dict(obj: Any) -> Any:
    """Plain dicts and lists of a dataclass tree (tuples become lists: YAML/JSON have none)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj


def from_dict(cls: type[T], raw: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from plain data, refusing unknown keys and wrong types by path."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"unknown key {_join(where, unknown[0])!r}; known keys: {', '.join(sorted(names))}"
        )
    values = {k: _coerce(hints[k], v, _join(where, k)) for k, v in raw.items()}
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _coerce(options[0], value, where)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {k: _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()} if args else value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and not _is_exact(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _is_exact(value: Any, hint: type) -> bool:
    return isinstance(value, hint) and (hint is bool or not isinstance(value, bool))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def dumps_json(obj: Any) -> str:
    """Stable JSON for configs and metrics (NaN written as null)."""
    return json.dumps(_finite(to_dict(obj)), indent=2, sort_keys=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def builtin_config(name: str) -> Path:
    """Path of a config shipped with the package, e.g. ``builtin_config("digits")``."""
    from importlib.resources import files

    path = Path(str(files("jointspace") / "configs" / f"{name}.yaml"))
    if not path.is_file():
        raise ConfigError(f"no built-in config {name!r}")
    return path
