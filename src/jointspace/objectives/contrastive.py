"""Symmetric CLIP / InfoNCE loss with a learnable, clamped temperature."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from jointspace.objectives.base import PairwiseObjective, check_pair
from jointspace.objectives.masks import Positives, as_positives
from jointspace.objectives.tiled import DEFAULT_BLOCK, check_block, clip_lse

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
    check_pair("clip_loss", a, b)
    scale = logit_scale.float().clamp(0.0, max_logit_scale).exp()
    logits = scale * a.float() @ b.float().T
    if positives is not None:
        false_negatives = positives & ~torch.eye(len(a), dtype=torch.bool, device=a.device)
        logits = logits.masked_fill(false_negatives, float("-inf"))
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def tiled_clip_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor,
    positives: torch.Tensor | Positives | None = None,
    max_logit_scale: float = MAX_LOGIT_SCALE,
    *,
    groups: Mapping[str, torch.Tensor] | None = None,
    block: int = DEFAULT_BLOCK,
) -> torch.Tensor:
    """:func:`clip_loss` computed ``block × block`` tiles at a time (float32, also under
    autocast): the same value and gradients in O(N·d + block²) memory instead of O(N²).

    Duplicates come from ``groups`` (modality → ``[N]`` ids, masked tile by tile) or a dense
    ``positives`` mask.
    """
    check_pair("tiled_clip_loss", a, b)
    scale = logit_scale.float().clamp(0.0, max_logit_scale).exp()
    a, b = scale * a.float(), b.float()
    rows, cols = clip_lse(a, b, as_positives(positives, groups), block)
    matched = (a * b).sum(1)  # the diagonal logits: the targets of both directions
    return ((rows - matched).mean() + (cols - matched).mean()) / 2


class ClipObjective(PairwiseObjective):
    """CLIP loss averaged over every pair of modalities, at the model's clamped temperature.

    ``block`` (rows per tile) computes it tile by tile (:func:`tiled_clip_loss`); null: at once.
    """

    name = "clip"

    def __init__(
        self,
        max_logit_scale: float = MAX_LOGIT_SCALE,
        block: int | None = None,
        anchor: str | None = None,
    ):
        super().__init__(anchor)
        self.max_logit_scale = max_logit_scale
        self.block = check_block(self.name, block)

    def pair_loss(self, a, b, logit_scale, positives, logit_bias=None) -> torch.Tensor:
        if logit_scale is None:
            raise ValueError("the clip objective needs the model's logit_scale")
        return clip_loss(a, b, logit_scale, positives, self.max_logit_scale)

    def pair_term(self, a, b, logit_scale, logit_bias, positives) -> torch.Tensor:
        if self.block is None:
            return super().pair_term(a, b, logit_scale, logit_bias, positives)
        if logit_scale is None:
            raise ValueError("the clip objective needs the model's logit_scale")
        return tiled_clip_loss(a, b, logit_scale, positives, self.max_logit_scale, block=self.block)

    def used(self, logit_scale, logit_bias) -> dict[str, torch.Tensor]:
        if logit_scale is None:
            return {}
        return {"temperature": (-logit_scale.float().clamp(0.0, self.max_logit_scale)).exp()}
