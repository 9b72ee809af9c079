"""Gaussian product of experts: diagonal Gaussians fused by precision, with a standard-normal prior
expert, and a per-row presence mask so a row may miss any expert (Wu & Goodman, 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from jointspace.config import ConfigError


def product_of_experts(
    mus: Sequence[torch.Tensor] | torch.Tensor,
    logvars: Sequence[torch.Tensor] | torch.Tensor,
    mask: Sequence[torch.Tensor] | torch.Tensor | None = None,
    *,
    prior: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, logvar)`` [B, D] of the product of M experts ``mus``/``logvars`` [M, B, D] (and the
    N(0, 1) prior when ``prior``); ``mask`` [M, B] is False where a row has no such expert."""
    mu, logvar = torch.stack(list(mus)), torch.stack(list(logvars))
    if mu.shape != logvar.shape or mu.dim() != 3:
        raise ConfigError(
            f"product_of_experts: mus {tuple(mu.shape)} and logvars "
            f"{tuple(logvar.shape)} must both be [experts, batch, dim]"
        )
    present = torch.ones(mu.shape[:2], dtype=torch.bool, device=mu.device)
    if mask is not None:
        present = torch.stack(list(mask)).to(device=mu.device, dtype=torch.bool)
        if present.shape != mu.shape[:2]:
            raise ConfigError(
                f"product_of_experts: mask {tuple(present.shape)} must be "
                f"[experts, batch] = {tuple(mu.shape[:2])}"
            )
    if prior:  # the prior is one more expert, present in every row: mean 0, log-variance 0
        mu = torch.cat([torch.zeros_like(mu[:1]), mu])
        logvar = torch.cat([torch.zeros_like(logvar[:1]), logvar])
        present = torch.cat([torch.ones_like(present[:1]), present])
    if not bool(present.any(0).all()):
        raise ConfigError("product_of_experts: a row has no expert and no prior")
    keep = present.unsqueeze(-1)
    # Log-precisions, -inf for an absent expert: logsumexp gives log(sum of precisions) stably,
    # and for a single expert returns its own value bit for bit (the max plus log 1).
    log_precision = torch.where(keep, -logvar, torch.full_like(logvar, -torch.inf))
    log_total = torch.logsumexp(log_precision, dim=0)
    weights = torch.exp(log_precision - log_total)  # precision shares, exactly 1 for one expert
    # where(), not weights * mu: an absent expert's mean may be anything, NaN included.
    fused = torch.where(keep, weights * mu, torch.zeros_like(mu)).sum(0)
    return fused, -log_total
