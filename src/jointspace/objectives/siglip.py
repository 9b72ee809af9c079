"""SigLIP: a sigmoid loss on every pair, with the model's learnable scale and bias (Zhai 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from jointspace.config import ConfigError
from jointspace.objectives.base import LogitInit, PairwiseObjective


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


class SigLipObjective(PairwiseObjective):
    """SigLIP over every pair of modalities with the model's scale and bias.

    ``init_scale`` and ``init_bias`` (the paper's 10 and −10) start a model that has no bias yet.
    """

    name = "siglip"

    def __init__(self, init_scale: float = 10.0, init_bias: float = -10.0):
        super().__init__()
        if not init_scale > 0:
            raise ConfigError(f"objectives: siglip init_scale must be positive, got {init_scale}")
        self.logit_init = LogitInit(float(init_scale), float(init_bias))

    def pair_loss(self, a, b, logit_scale, positives, logit_bias=None) -> torch.Tensor:
        if logit_scale is None or logit_bias is None:
            raise ValueError(
                "the siglip objective needs the model's logit_scale and logit_bias "
                "(model.add_logit_bias adds a bias; the Trainer does so itself)"
            )
        return siglip_loss(a, b, logit_scale, logit_bias, positives)

    def used(self, logit_scale, logit_bias) -> dict[str, torch.Tensor]:
        if logit_scale is None or logit_bias is None:
            return {}
        return {"temperature": (-logit_scale.float()).exp(), "logit_bias": logit_bias.float()}
