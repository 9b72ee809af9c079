"""ClassifyConfig: what ``jointspace classify`` trains — data with labels, towers, a fusion head."""

from __future__ import annotations

from dataclasses import dataclass, field

from jointspace.config import ConfigError, ModelConfig, PartConfig, YamlConfig, _bounded


@dataclass
class LabelledDataConfig:
    """Rows with a label: which modalities the classifier reads, and how rows are split."""

    manifest: str = "builtin:digits-vqa"
    modalities: list[str] = field(default_factory=lambda: ["text", "image"])
    label_column: str = "label"
    # A column whose values each get their own accuracy (e.g. meta_question_type); null: none.
    group_column: str | None = None
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str | None = "test"
    skip_bad: bool = False


@dataclass
class TowersConfig:
    """The towers that turn each modality into token states: a run's, or built from a config."""

    run: str | None = None  # a jointspace run or model directory: its towers
    model: ModelConfig | None = None  # else towers from this config (pretrained paths or scratch)
    # false: frozen, each unique input encoded once; true: fine-tuned with the head.
    train: bool = False
    # tokens: token/patch states (attention and graph heads need them); pooled: one vector each.
    inputs: str = _bounded("tokens", choices=("tokens", "pooled"))
    batch_size: int = _bounded(64, min=1)  # inputs per tower call while encoding


@dataclass
class ClassifierTrainConfig:
    """Optimisation of the head (and the towers when ``towers.train``)."""

    epochs: int = _bounded(30, min=1)
    batch_size: int = _bounded(64, min=1)
    lr: float = _bounded(1e-3, gt=0)
    weight_decay: float = _bounded(0.01, min=0)
    warmup_steps: int = _bounded(20, min=0)
    # Each modality of a training row is dropped with this probability (never all of them),
    # so the classifier learns to answer when one is missing.
    modality_dropout: float = _bounded(0.0, min=0, max=1)
    seed: int = 0
    progress: bool = True


@dataclass
class ClassifyConfig(YamlConfig):
    """Everything ``jointspace classify`` needs; round-trips YAML like ExperimentConfig."""

    data: LabelledDataConfig = field(default_factory=LabelledDataConfig)
    towers: TowersConfig = field(default_factory=TowersConfig)
    head: PartConfig = field(default_factory=lambda: PartConfig("attention"))
    train: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)

    def check(self) -> None:
        if (self.towers.run is None) == (self.towers.model is None):
            raise ConfigError(
                "towers: give exactly one of towers.run (a trained run's towers) and "
                "towers.model (towers built from a model config)"
            )
        if not self.data.modalities:
            raise ConfigError("data.modalities: the list is empty; e.g. [text, image]")
        towers = self.towers.model.towers if self.towers.model is not None else None
        if towers is not None and (missing := [m for m in self.data.modalities if m not in towers]):
            raise ConfigError(
                f"data.modalities: {missing[0]!r} has no tower in towers.model.towers "
                f"(it has {', '.join(towers) or 'none'})"
            )
