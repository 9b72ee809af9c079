"""Experiment configuration: dataclasses that round-trip to YAML and JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from jointspace.config_io import ConfigError, from_dict, to_dict
from jointspace.yaml_loader import load_yaml


def _bounded(default: Any, **limits: Any) -> Any:
    """A field that ``from_dict`` checks: ``min``/``max`` (inclusive), ``gt``, ``choices``."""
    return field(default=default, metadata=limits)


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
    shuffle_buffer: int = _bounded(2000, min=0)  # shards only: samples mixed at once; 0: in order
    val_manifest: str | None = None  # evaluation rows from this manifest (shards need one)


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
    unlock_last: int = _bounded(0, min=0)


@dataclass
class ObjectiveConfig(PartConfig):
    """An objective and its weight in the total loss (every term is logged on its own)."""

    weight: float = 1.0


@dataclass
class ModelConfig:
    """The joint model: one tower per modality projected to ``embed_dim``."""

    embed_dim: int = _bounded(64, min=1)
    towers: dict[str, TowerConfig] = field(
        default_factory=lambda: {"text": TowerConfig("transformer"), "image": TowerConfig("cnn")}
    )
    init_temperature: float = _bounded(0.07, gt=0)
    # SigLIP's learnable logit bias; null: the model has none (set when an objective needs it).
    init_logit_bias: float | None = None
    # A local Hugging Face CLIP/SigLIP directory: both towers, embed_dim and temperature from it.
    pretrained: str | None = None


@dataclass
class TrainConfig:
    """Optimisation, schedule, checkpointing and evaluation cadence."""

    epochs: int = _bounded(10, min=1)
    max_steps: int | None = _bounded(None, min=1)
    batch_size: int = _bounded(128, min=1)
    lr: float = _bounded(1e-3, gt=0)
    weight_decay: float = _bounded(0.1, min=0)
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = _bounded(20, min=0)
    min_lr_ratio: float = _bounded(0.05, min=0, max=1)
    grad_clip: float | None = _bounded(1.0, min=0)
    # fp32, or autocast in bf16 (CPU and GPU) or fp16 (GPU only: losses scaled by a GradScaler).
    precision: str = _bounded("fp32", choices=("fp32", "bf16", "fp16"))
    # Rows per chunk of the gradient cache (exact big batches in one chunk's memory); null: off.
    grad_cache_chunk: int | None = _bounded(None, min=1)
    # Recompute the towers' blocks in backward instead of storing their activations.
    activation_checkpointing: bool = False
    # Layer-wise lr decay: a parameter's lr is multiplied by layer_decay^(its depth from the top).
    layer_decay: float | None = _bounded(None, gt=0, max=1)
    seed: int = 0
    log_every: int = _bounded(10, min=1)
    eval_every: int | None = _bounded(None, min=1)
    checkpoint_every: int = _bounded(100, min=1)
    keep_checkpoints: int = _bounded(2, min=1)
    progress: bool = True
    device: str = "auto"
    num_workers: int = _bounded(0, min=0)
    # Frozen towers' features: "auto" ($JOINTSPACE_CACHE/features), a directory, or null (off).
    feature_cache: str | None = "auto"
    # Experiment trackers every metrics.jsonl record also goes to (train/trackers.py).
    log_to: list[str] = field(default_factory=list, metadata={"choices": ("tensorboard", "mlflow")})
    # Modality → probability of hiding a cell the row has in a training step (train/dropout.py):
    # seeded, and never a row's last modality. {}: off.
    modality_dropout: dict[str, float] = field(default_factory=dict, metadata={"min": 0, "max": 1})


@dataclass
class EvalConfig:
    """How retrieval is scored: which rows count as relevant and which cut-offs to report."""

    relevance: str = _bounded("pairs", choices=("pairs", "label"))
    ks: list[int] = field(default_factory=lambda: [1, 5, 10], metadata={"min": 1})
    batch_size: int = _bounded(256, min=1)


@dataclass
class RerankConfig:
    """The optional second stage: a cross-modal matcher that re-scores the top ``candidates``."""

    width: int = _bounded(128, min=1)
    depth: int = _bounded(2, min=1)
    heads: int = _bounded(4, min=1)
    dropout: float = _bounded(0.1, min=0, max=1)
    epochs: int = _bounded(15, min=1)
    batch_size: int = _bounded(32, min=1)
    lr: float = _bounded(1e-3, gt=0)
    weight_decay: float = _bounded(0.05, min=0)
    warmup_steps: int = _bounded(20, min=0)
    negatives: int = _bounded(7, min=1)  # hard negatives per query in each training step
    pool: int = _bounded(32, min=1)  # ... drawn from the bi-encoder's best non-matches up to here
    candidates: int = _bounded(20, min=1)  # bi-encoder results re-scored per query (val, test)
    seed: int = 0
    progress: bool = True


@dataclass
class EncodeConfig:
    """How a saved model encodes (embed, index build, search, the service): docs/training.md."""

    backend: str = _bounded("eager", choices=("eager", "bf16", "int8", "onnx", "auto"))
    min_cosine: float = _bounded(0.999, min=0, max=1)  # auto: the least cosine to eager fp32
    threads: int | None = _bounded(None, min=1)  # None: OMP_NUM_THREADS, else the usable CPUs


class YamlConfig:
    """A config dataclass that round-trips YAML and JSON, checked by ``from_dict``."""

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Any:
        config = from_dict(cls, raw)
        config.check()
        return config

    def check(self) -> None:
        """Refuse sections that contradict each other (each is valid alone)."""

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            from jointspace.atomic import write_text_atomic

            write_text_atomic(path, text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> Any:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = load_yaml(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text file (not UTF-8)") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"{path}: not valid YAML: {problem}{where}") from None
        try:
            return cls.from_dict({} if raw is None else raw)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err


@dataclass
class ExperimentConfig(YamlConfig):
    """Everything one training run needs; ``to_yaml``/``from_yaml`` round-trip exactly."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objectives: list[ObjectiveConfig] = field(default_factory=lambda: [ObjectiveConfig("clip")])
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExperimentConfig:
        # The single-objective form: `objective: {...}` instead of a list.
        if isinstance(raw, dict) and "objective" in raw and "objectives" not in raw:
            raw = {**raw, "objectives": [raw["objective"]]}
            del raw["objective"]
        return super().from_dict(raw)

    def check(self) -> None:
        """Refuse sections that contradict each other (each is valid alone), naming both."""
        if not self.objectives:
            raise ConfigError("objectives: the list is empty; give one, e.g. [{name: clip}]")
        if missing := [m for m in self.model.towers if m not in self.data.modalities]:
            raise ConfigError(
                f"model.towers.{missing[0]}: data.modalities lists only "
                f"{', '.join(self.data.modalities) or 'nothing'}; add {missing[0]!r} there, "
                "or remove the tower"
            )

        if unknown := [m for m in self.train.modality_dropout if m not in self.data.modalities]:
            raise ConfigError(
                f"train.modality_dropout.{unknown[0]}: not among data.modalities "
                f"({', '.join(self.data.modalities)})"
            )
        for objective in self.objectives:
            anchor = objective.params.get("anchor")
            if anchor is not None and anchor not in self.model.towers:
                raise ConfigError(
                    f"objectives: {objective.name} anchor {anchor!r} is not a modality of "
                    f"model.towers ({', '.join(self.model.towers)})"
                )

    @classmethod
    def from_yaml(cls, path: str | Path) -> ExperimentConfig:
        return super().from_yaml(path)


C = TypeVar("C", bound=YamlConfig)


def apply_overrides(config: C, overrides: Sequence[str]) -> C:
    """``config`` with each ``KEY.PATH=VALUE`` (``--set``) applied and re-checked: a new config."""
    from jointspace.config_overrides import apply_overrides as apply

    return apply(config, overrides)


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
