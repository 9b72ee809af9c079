"""Fine-tuning the towers with the head (``towers.train``): each batch's raw inputs go through
the towers' preprocess, collate and token states with gradients, instead of cached states."""

from __future__ import annotations

from collections.abc import Callable

import torch

from jointspace.classifier.data import LabelledSet
from jointspace.config import ConfigError
from jointspace.models.joint import JointModel
from jointspace.models.tokens import Tokens

InputsFn = Callable[[torch.Tensor, "set[str] | frozenset[str] | None"], dict[str, Tokens]]


def check_trainable(towers: JointModel, modalities: list[str]) -> None:
    """Refuse fine-tuning towers whose every layer the classifier uses is locked."""
    for m in modalities:
        tower = towers.tower(m)
        # The tower's projection into the joint space: the classifier never uses it.
        head = {id(p) for name, p in tower.named_parameters() if name.startswith("head.")}
        if any(p.requires_grad and id(p) not in head for p in tower.parameters()):
            return
    raise ConfigError(
        "towers.train: every layer of the towers is locked (lock: true in their model config), "
        "so nothing would change; unlock some (unlock_last: N), or set towers.train: false"
    )


def tower_inputs(towers: JointModel, data: LabelledSet, mode: str) -> InputsFn:
    """``(rows, drop) → {modality: (states, keep)}`` computed by ``towers`` with gradients."""
    device = next(towers.parameters()).device

    def inputs(rows: torch.Tensor, drop=None) -> dict[str, Tokens]:
        out = {}
        for m in data.modalities:
            if drop and m in drop:
                continue
            tower = towers.tower(m)
            raws = [data.raw[m][j] for j in data.index[m][rows].tolist()]
            x = tower.collate([tower.preprocess(r) for r in raws]).to(device)
            if mode == "tokens":
                states, keep = tower.tokens(x)
            else:
                states = tower.pooled(x).unsqueeze(1)
                keep = torch.ones(states.shape[:2], dtype=torch.bool, device=device)
            out[m] = (states.float(), keep.bool())
        return out

    return inputs
