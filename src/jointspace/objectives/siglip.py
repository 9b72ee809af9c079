"""SigLIP: a sigmoid loss on every pair, with the model's learnable scale and bias (Zhai 2023)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from jointspace.config import ConfigError
from jointspace.objectives.base import LogitInit, PairwiseObjective, check_pair
from jointspace.objectives.masks import Positives, as_positives
from jointspace.objectives.tiled import DEFAULT_BLOCK, check_block, siglip_sum


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
    check_pair("siglip_loss", a, b)
    logits = logit_scale.float().exp() * a.float() @ b.float().T + logit_bias.float()
    eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
    matches = eye if positives is None else positives | eye
    signs = matches.float() * 2 - 1
    return -F.logsigmoid(signs * logits).sum() / len(a)


def tiled_siglip_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor,
    positives: torch.Tensor | Positives | None = None,
    *,
    groups: Mapping[str, torch.Tensor] | None = None,
    block: int = DEFAULT_BLOCK,
) -> torch.Tensor:
    """:func:`siglip_loss` computed ``block × block`` tiles at a time (float32, also under
    autocast): the same value and gradients in O(N·d + block²) memory instead of O(N²)."""
    check_pair("tiled_siglip_loss", a, b)
    a = logit_scale.float().exp() * a.float()
    total = siglip_sum(a, b.float(), logit_bias.float(), as_positives(positives, groups), block)
    return total / len(a)


class SigLipObjective(PairwiseObjective):
    """SigLIP over every pair of modalities with the model's scale and bias.

    ``init_scale`` and ``init_bias`` (the paper's 10 and −10) start a model that has no bias yet;
    ``block`` (rows per tile) computes it tile by tile (:func:`tiled_siglip_loss`).
    """

    name = "siglip"

    def __init__(
        self,
        init_scale: float = 10.0,
        init_bias: float = -10.0,
        block: int | None = None,
        anchor: str | None = None,
    ):
        super().__init__(anchor)
        if not init_scale > 0:
            raise ConfigError(f"objectives: siglip init_scale must be positive, got {init_scale}")
        self.logit_init = LogitInit(float(init_scale), float(init_bias))
        self.block = check_block(self.name, block)

    def pair_loss(self, a, b, logit_scale, positives, logit_bias=None) -> torch.Tensor:
        scale, bias = _logits(logit_scale, logit_bias)
        return siglip_loss(a, b, scale, bias, positives)

    def pair_term(self, a, b, logit_scale, logit_bias, positives) -> torch.Tensor:
        if self.block is None:
            return super().pair_term(a, b, logit_scale, logit_bias, positives)
        scale, bias = _logits(logit_scale, logit_bias)
        return tiled_siglip_loss(a, b, scale, bias, positives, block=self.block)

    def used(self, logit_scale, logit_bias) -> dict[str, torch.Tensor]:
        if logit_scale is None or logit_bias is None:
            return {}
        return {"temperature": (-logit_scale.float()).exp(), "logit_bias": logit_bias.float()}


def _logits(
    logit_scale: torch.Tensor | None, logit_bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if logit_scale is None or logit_bias is None:
        raise ValueError(
            "the siglip objective needs the model's logit_scale and logit_bias "
            "(model.add_logit_bias adds a bias; the Trainer does so itself)"
        )
    return logit_scale, logit_bias
