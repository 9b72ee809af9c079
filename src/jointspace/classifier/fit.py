"""Train a FusionClassifier on a LabelledSet (frozen towers' states); predict labels with it."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from jointspace.classifier.config import ClassifyConfig
from jointspace.classifier.data import LabelledSet, reencode
from jointspace.classifier.finetune import InputsFn, check_trainable, tower_inputs
from jointspace.evaluate.classification import ClassificationEvaluator
from jointspace.models.fusion import FusionClassifier, build_fusion_head
from jointspace.models.joint import JointModel
from jointspace.models.modes import evaluating
from jointspace.progress import Progress
from jointspace.train.optim import lr_factor, param_groups, set_lr

PREDICT_BATCH = 256  # rows per forward pass when predicting


@dataclass
class ClassifierFit:
    """The selected classifier, per-step losses, per-epoch validation scores, the epoch kept."""

    model: FusionClassifier
    history: list[dict[str, float]] = field(default_factory=list)
    evals: list[float] = field(default_factory=list)
    best_epoch: int | None = None  # 1-based; None: no validation, the last epoch is kept


def new_classifier(data: LabelledSet, config: ClassifyConfig) -> FusionClassifier:
    """A fusion head (``config.head``) sized for ``data``'s token widths, and its class layer."""
    return FusionClassifier(build_fusion_head(config.head, data.dims), len(data.classes))


def dropout_patterns(
    rows: int, modalities: list[str], p: float, generator: torch.Generator
) -> torch.Tensor:
    """``[rows, M]`` bool, True where a modality is dropped: each with probability ``p``; a row
    that would lose all of them keeps one, chosen uniformly."""
    dropped = torch.rand(rows, len(modalities), generator=generator) < p
    everything = dropped.all(dim=1)
    if everything.any():
        keep = torch.randint(len(modalities), (rows,), generator=generator)
        dropped[everything, keep[everything]] = False
    return dropped


def _by_pattern(dropped: torch.Tensor, modalities: list[str]) -> dict[frozenset[str], torch.Tensor]:
    """Row positions grouped by the set of modalities they drop (one head call per group)."""
    groups: dict[frozenset[str], list[int]] = {}
    for i, row in enumerate(dropped.tolist()):
        key = frozenset(m for m, gone in zip(modalities, row, strict=True) if gone)
        groups.setdefault(key, []).append(i)
    return {k: torch.tensor(v) for k, v in groups.items()}


def batch_loss(
    model: FusionClassifier,
    data: LabelledSet,
    rows: torch.Tensor,
    dropout: float,
    generator: torch.Generator,
    inputs: InputsFn | None = None,
) -> torch.Tensor:
    """Mean cross-entropy over ``rows``, each row missing the modalities dropout drew for it.

    ``inputs`` gives the head its states (default: ``data.inputs``, the cached ones).
    """
    modalities = data.modalities
    inputs = inputs or data.inputs
    absent = data.absent(rows)
    if (dropout <= 0 or len(modalities) < 2) and not absent.any():
        logits, _ = model(inputs(rows, None))
        return F.cross_entropy(logits, data.labels[rows])
    if dropout > 0 and len(modalities) >= 2:
        dropped = dropout_patterns(len(rows), modalities, dropout, generator) | absent
        # A row whose present cells dropout all hid keeps them all (never none left).
        bare = dropped.all(dim=1)
        dropped[bare] = absent[bare]
    else:
        dropped = absent
    total = torch.zeros(())
    for drop, positions in _by_pattern(dropped, modalities).items():
        chosen = rows[positions]
        logits, _ = model(inputs(chosen, set(drop)))
        total = total + F.cross_entropy(logits, data.labels[chosen], reduction="sum")
    return total / len(rows)


def fit_classifier(
    train: LabelledSet,
    config: ClassifyConfig,
    *,
    val: LabelledSet | None = None,
    towers: JointModel | None = None,
) -> ClassifierFit:
    """Train with AdamW (warmup, cosine decay), keeping the epoch best on ``val`` by the
    evaluator's primary metric (accuracy); without ``val``, the last epoch.

    With ``towers`` (``towers.train``) their unlocked layers train with the head, on raw inputs;
    ``towers`` is left holding the kept epoch's weights.
    """
    settings = config.train
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    model = new_classifier(train, config)
    modules: list[torch.nn.Module] = [model]
    inputs = None
    if towers is not None:
        check_trainable(towers, train.modalities)
        modules.append(towers)
        inputs = tower_inputs(towers, train, config.towers.inputs)
    optimizer = torch.optim.AdamW(param_groups(modules, settings.weight_decay), lr=settings.lr)
    per_epoch = -(-len(train) // settings.batch_size)
    total = settings.epochs * per_epoch
    fit = ClassifierFit(model)
    evaluator = None if val is None else ClassificationEvaluator(val.labels.tolist(), val.classes)
    best_score, best_state = float("-inf"), None  # best_state: one state dict per module
    # A bar on a terminal; otherwise a line per epoch (steps are too quick to log).
    progress = Progress(total, 0, "classify", enabled=settings.progress, every=total + 1)
    with progress.active():
        for epoch in range(settings.epochs):
            for module in modules:
                module.train()
            order = torch.randperm(len(train), generator=generator)
            first = len(fit.history)
            for start in range(0, len(order), settings.batch_size):
                step = epoch * per_epoch + start // settings.batch_size
                set_lr(optimizer, settings.lr * lr_factor(step, total, settings.warmup_steps, 0.05))
                rows = order[start : start + settings.batch_size]
                loss = batch_loss(model, train, rows, settings.modality_dropout, generator, inputs)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for m in modules for p in m.parameters()], 1.0)
                optimizer.step()
                fit.history.append({"step": step + 1, "loss": float(loss.detach())})
                progress.update(step + 1, {"loss": f"{fit.history[-1]['loss']:.4f}"})
            losses = [r["loss"] for r in fit.history[first:]]
            shown = f"classify epoch {epoch + 1}/{settings.epochs}: mean loss "
            shown += f"{sum(losses) / max(1, len(losses)):.4f}"
            if val is not None and evaluator is not None:
                scored = val if towers is None else _reencoded(val, towers, config)
                metrics = evaluator(predict_labels(model, scored).tolist())
                score = float(metrics[evaluator.primary_metric])
                fit.evals.append(score)
                shown += f", val {evaluator.primary_metric} {score:.4f}"
                if score > best_score:
                    best_score = score
                    best_state = [copy.deepcopy(m.state_dict()) for m in modules]
                    fit.best_epoch = epoch + 1
            progress.info("%s", shown)
    if best_state is not None:
        for module, state in zip(modules, best_state, strict=True):
            module.load_state_dict(state)
    for module in modules:
        module.eval()
    return fit


def _reencoded(data: LabelledSet, towers: JointModel, config: ClassifyConfig) -> LabelledSet:
    return reencode(data, towers, config.towers.inputs, config.towers.batch_size)


@torch.no_grad()
def predict_proba(
    model: FusionClassifier, data: LabelledSet, *, drop: set[str] | None = None
) -> torch.Tensor:
    """``[N, classes]`` softmax probabilities for every row of ``data`` (``drop``: missing;
    a row's absent cells are missing for that row)."""
    chunks = []
    with evaluating(model):
        for start in range(0, len(data), PREDICT_BATCH):
            rows = torch.arange(start, min(start + PREDICT_BATCH, len(data)))
            out: torch.Tensor | None = None
            for absent, positions in _by_pattern(data.absent(rows), data.modalities).items():
                logits, _ = model(data.inputs(rows[positions], set(drop or ()) | absent))
                if out is None:
                    out = logits.new_zeros(len(rows), logits.shape[1], dtype=torch.float32)
                out[positions.to(out.device)] = logits.float().softmax(dim=-1)
            assert out is not None
            chunks.append(out)
    return torch.cat(chunks)


def predict_labels(
    model: FusionClassifier, data: LabelledSet, *, drop: set[str] | None = None
) -> torch.Tensor:
    """The most probable class index of every row of ``data`` (``drop``: modalities missing)."""
    return predict_proba(model, data, drop=drop).argmax(dim=-1)
