"""Symmetric CLIP / InfoNCE loss with a learnable, clamped temperature."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from jointspace.objectives.base import PairwiseObjective

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp: temperature never below 0.01


def clip_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor,
    positives: torch.Tensor | None = None,
    max_logit_scale: float = MAX_LOGIT_SCALE,
) -> torch.Tensor:
    """Mean of a→b and b→a cross-entropy over ``exp(logit_scale) · a bᵀ``; row i matches i.

    ``positives[i, j]`` marks other rows that also match (a shared image, a duplicate caption):
    they are removed from the softmax so they are never pushed apart as false negatives.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"clip_loss needs two [N, D] tensors of one shape, got {a.shape}, {b.shape}"
        )
    scale = logit_scale.float().clamp(0.0, max_logit_scale).exp()
    logits = scale * a.float() @ b.float().T
    if positives is not None:
        false_negatives = positives & ~torch.eye(len(a), dtype=torch.bool, device=a.device)
        logits = logits.masked_fill(false_negatives, float("-inf"))
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class ClipObjective(PairwiseObjective):
    """CLIP loss averaged over every pair of modalities, at the model's clamped temperature."""

    name = "clip"

    def __init__(self, max_logit_scale: float = MAX_LOGIT_SCALE):
        super().__init__()
        self.max_logit_scale = max_logit_scale

    def pair_loss(self, a, b, logit_scale, positives, logit_bias=None) -> torch.Tensor:
        if logit_scale is None:
            raise ValueError("the clip objective needs the model's logit_scale")
        return clip_loss(a, b, logit_scale, positives, self.max_logit_scale)

    def used(self, logit_scale, logit_bias) -> dict[str, torch.Tensor]:
        if logit_scale is None:
            return {}
        return {"temperature": (-logit_scale.float().clamp(0.0, self.max_logit_scale)).exp()}
