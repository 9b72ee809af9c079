"""MvaeConfig: what ``jointspace mvae`` trains — a manifest, each modality's input form and
likelihood, the latent space, the KL warm-up and the optimiser."""

from __future__ import annotations

from dataclasses import dataclass, field

from jointspace.config import ConfigError, YamlConfig, _bounded

FORMS = ("image", "text", "audio")  # the modalities an MVAE reads, each with its input form
# Likelihoods each form may use; the first is the default.
LIKELIHOODS = {
    "image": ("bernoulli", "gaussian"),
    "text": ("multinomial",),
    "audio": ("gaussian",),
}


@dataclass
class MvaeDataConfig:
    """Where the rows come from and how they are split."""

    manifest: str = "builtin:digits"
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str | None = "test"
    # Rows of these splits are shared out 70/15/15 to train/val/test by a hash of their
    # group_column, e.g. digits' zero-shot classes, which an MVAE needs to learn to draw.
    resplit: list[str] = field(default_factory=list)
    group_column: str = "image"  # rows sharing this value always land in the same split


@dataclass
class MvaeModalityConfig:
    """One modality's input form and likelihood; only its own form's fields matter."""

    likelihood: str | None = None  # null: the form's default (bernoulli, multinomial, gaussian)
    weight: float = _bounded(1.0, gt=0)  # of its log-likelihood in the ELBO
    size: int = _bounded(8, min=2)  # image: grayscale pixels resized to size × size, in [0, 1]
    max_vocab: int = _bounded(1000, min=1)  # text: the most frequent training words kept
    min_count: int = _bounded(1, min=1)  # text: words seen fewer times in training are dropped
    sample_rate: int = _bounded(16_000, min=1000)  # audio: log-mel frames of a centred clip
    seconds: float = _bounded(1.0, gt=0)
    n_mels: int = _bounded(32, min=4)
    hop: int = _bounded(512, min=16)


@dataclass
class MvaeModelConfig:
    latent: int = _bounded(16, min=1)
    hidden: int = _bounded(128, min=1)


@dataclass
class MvaeTrainConfig:
    """AdamW with warmup and cosine decay; the KL weight grows linearly from 0 to ``beta``."""

    epochs: int = _bounded(30, min=1)
    batch_size: int = _bounded(128, min=1)
    lr: float = _bounded(1e-2, gt=0)
    weight_decay: float = _bounded(0.0, min=0)
    warmup_steps: int = _bounded(0, min=0)
    min_lr_ratio: float = _bounded(0.05, min=0, max=1)
    grad_clip: float | None = _bounded(None, gt=0)
    # Without the warm-up the posterior collapsed to the prior on digits (docs/modalities.md).
    kl_warmup_steps: int = _bounded(100, min=0)
    beta: float = _bounded(1.0, min=0)
    subsets_k: int = _bounded(0, min=0)  # random subsets per step beyond the joint and singles
    seed: int = 0
    progress: bool = True


@dataclass
class MvaeConfig(YamlConfig):
    """Everything ``jointspace mvae`` needs; round-trips YAML like the other configs."""

    data: MvaeDataConfig = field(default_factory=MvaeDataConfig)
    modalities: dict[str, MvaeModalityConfig] = field(
        default_factory=lambda: {"image": MvaeModalityConfig(), "text": MvaeModalityConfig()}
    )
    model: MvaeModelConfig = field(default_factory=MvaeModelConfig)
    train: MvaeTrainConfig = field(default_factory=MvaeTrainConfig)

    def check(self) -> None:
        if not self.modalities:
            raise ConfigError("modalities: none given; e.g. {image: {}, text: {}}")
        for name, spec in self.modalities.items():
            if name not in FORMS:
                raise ConfigError(
                    f"modalities.{name}: unknown modality; an MVAE reads {', '.join(FORMS)}"
                )
            allowed = LIKELIHOODS[name]
            if spec.likelihood is None:
                spec.likelihood = allowed[0]
            elif spec.likelihood not in allowed:
                raise ConfigError(
                    f"modalities.{name}.likelihood: {spec.likelihood!r} does not fit {name}; "
                    f"use {' or '.join(allowed)}"
                )
        splits = [self.data.train_split, self.data.val_split, self.data.test_split]
        if clash := sorted(set(self.data.resplit) & {s for s in splits if s}):
            raise ConfigError(f"data.resplit: {clash[0]!r} is already the train, val or test split")
