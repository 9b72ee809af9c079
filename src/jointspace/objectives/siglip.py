"""SigLIP: a sigmoid loss on every pair, with learnable temperature and bias (Zhai et al. 2023)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from jointspace.objectives.base import PairwiseObjective
from jointspace.registry import register


def siglip_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """``-Σ_ij log σ(z_ij (exp(scale) a_i·b_j + bias)) / N``; z = +1 for positives, else −1.

    Without ``positives`` only the diagonal pairs are positive; with it, rows sharing an image
    or a caption are positives too, so duplicates are never pushed apart.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"siglip_loss needs two [N, D] tensors of one shape, got {a.shape}, {b.shape}"
        )
    logits = logit_scale.float().exp() * a.float() @ b.float().T + logit_bias.float()
    eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
    matches = eye if positives is None else positives | eye
    signs = matches.float() * 2 - 1
    return -F.logsigmoid(signs * logits).sum() / len(a)


@register("objective", "siglip")
class SigLipObjective(PairwiseObjective):
    """SigLIP over every pair of modalities; owns its scale and bias (init log 10 and −10)."""

    name = "siglip"

    def __init__(self, init_scale: float = 10.0, init_bias: float = -10.0):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(init_bias)))

    def pair_loss(self, a, b, logit_scale, positives) -> torch.Tensor:
        # The model's CLIP logit_scale is ignored: SigLIP's scale and bias are its own.
        return siglip_loss(a, b, self.logit_scale, self.logit_bias, positives)
