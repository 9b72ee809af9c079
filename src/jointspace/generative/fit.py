"""Train a MultimodalVAE on a RowSet: AdamW with warmup and cosine decay, a linear KL warm-up,
and the epoch with the lowest validation loss kept."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from jointspace.generative.config import MvaeConfig
from jointspace.generative.forms import InputForms
from jointspace.generative.rows import RowSet
from jointspace.models.mvae import ModalitySpec, MultimodalVAE
from jointspace.progress import Progress
from jointspace.train.optim import lr_factor, param_groups, set_lr

EVAL_BATCH = 512  # rows per forward pass when scoring a split
EVAL_SEED = 1234  # the same posterior samples at every evaluation, so epochs compare


@dataclass
class MvaeFit:
    """The kept model, one record per epoch, and which epoch was kept (1-based)."""

    model: MultimodalVAE
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None


def new_model(config: MvaeConfig, forms: InputForms) -> MultimodalVAE:
    specs = {
        m: ModalitySpec(str(spec.likelihood), forms.shape(m), spec.weight)
        for m, spec in config.modalities.items()
    }
    return MultimodalVAE(specs, latent=config.model.latent, hidden=config.model.hidden)


def kl_weight(step: int, config: MvaeConfig) -> float:
    """The KL weight at 0-based ``step``: linear from 0 to ``train.beta`` over the warm-up."""
    settings = config.train
    if settings.kl_warmup_steps <= 0:
        return settings.beta
    return settings.beta * min(1.0, step / settings.kl_warmup_steps)


@torch.no_grad()
def evaluate_elbo(model: MultimodalVAE, data: RowSet, *, beta: float = 1.0) -> dict[str, float]:
    """Each loss term (joint, singles) averaged over ``data``'s rows, with fixed samples."""
    totals: dict[str, float] = {}
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(EVAL_SEED)
        for start in range(0, len(data), EVAL_BATCH):
            rows = torch.arange(start, min(start + EVAL_BATCH, len(data)))
            inputs, present = data.batch(rows)
            losses = model.elbo(inputs, present, beta=beta)
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + float(value) * len(rows)
    model.train(was_training)
    return {name: value / len(data) for name, value in totals.items()}


def fit_mvae(
    config: MvaeConfig, train: RowSet, forms: InputForms, *, val: RowSet | None = None
) -> MvaeFit:
    """Train from ``train.seed``; keep the epoch with the lowest ``val`` loss among those at the
    full KL weight (a model at a lower weight is not the one configured); else the last."""
    settings = config.train
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    model = new_model(config, forms)
    optimizer = torch.optim.AdamW(param_groups([model], settings.weight_decay), lr=settings.lr)
    per_epoch = -(-len(train) // settings.batch_size)
    total = settings.epochs * per_epoch
    fit = MvaeFit(model)
    best_loss, best_state = float("inf"), None
    progress = Progress(total, 0, "mvae", enabled=settings.progress, every=total + 1)
    with progress.active():
        for epoch in range(settings.epochs):
            model.train()
            order = torch.randperm(len(train), generator=generator)
            losses = []
            for start in range(0, len(order), settings.batch_size):
                step = epoch * per_epoch + start // settings.batch_size
                factor = lr_factor(step, total, settings.warmup_steps, settings.min_lr_ratio)
                set_lr(optimizer, settings.lr * factor)
                inputs, present = train.batch(order[start : start + settings.batch_size])
                beta = kl_weight(step, config)
                loss = model.elbo(
                    inputs, present, k=settings.subsets_k, beta=beta, seed=settings.seed + step
                )["mvae_loss"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if settings.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                optimizer.step()
                losses.append(float(loss.detach()))
                progress.update(step + 1, {"loss": f"{losses[-1]:.2f}", "beta": f"{beta:.2f}"})
            record = {"epoch": epoch + 1, "beta": beta, "train_loss": sum(losses) / len(losses)}
            shown = f"mvae epoch {epoch + 1}/{settings.epochs}: loss {record['train_loss']:.2f}"
            if val is not None:
                record["val_loss"] = evaluate_elbo(model, val, beta=settings.beta)["mvae_loss"]
                shown += f", val loss {record['val_loss']:.2f}"
                full = kl_weight((epoch + 1) * per_epoch - 1, config) >= settings.beta
                if full and record["val_loss"] < best_loss:
                    best_loss, best_state = record["val_loss"], copy.deepcopy(model.state_dict())
                    fit.best_epoch = epoch + 1
            fit.history.append(record)
            progress.info("%s", shown)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return fit
