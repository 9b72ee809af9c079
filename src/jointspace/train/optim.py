"""AdamW with no decay on biases, norms and embeddings; linear warmup then cosine decay."""

from __future__ import annotations

import math

import torch
from torch import nn

from jointspace.config import TrainConfig
from jointspace.train.layer_decay import lr_scale, parameter_depths

NO_DECAY_NAMES = ("pos_embed", "cls_token", "logit_scale", "logit_bias")


def param_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    """Decay matrices and conv kernels; leave biases, norm gains and embeddings alone."""
    decay, no_decay = [], []
    for module in modules:
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            skip = param.ndim < 2 or name.split(".")[-1] in NO_DECAY_NAMES
            (no_decay if skip else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(modules: list[nn.Module], config: TrainConfig) -> torch.optim.AdamW:
    groups = param_groups(modules, config.weight_decay)
    if config.layer_decay is not None:
        groups = decayed_groups(groups, parameter_depths(modules), config.layer_decay)
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas))


def decayed_groups(groups: list[dict], depths: dict[int, int], decay: float) -> list[dict]:
    """Split each group by parameter depth; ``lr_scale`` multiplies the lr (``set_lr``)."""
    split: list[dict] = []
    for group in groups:
        by_depth: dict[int, list] = {}
        for param in group["params"]:
            by_depth.setdefault(depths.get(id(param), 0), []).append(param)
        for depth, params in sorted(by_depth.items()):
            split.append(group | {"params": params, "lr_scale": lr_scale(decay, depth)})
    return split


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """LR multiplier at 0-based ``step``: linear warmup to 1, then cosine down to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return min_ratio + (1.0 - min_ratio) * cosine


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group's lr: ``lr`` times its ``lr_scale`` (layer-wise decay; 1 without)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
