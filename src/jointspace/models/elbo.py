"""The multimodal VAE's loss as pure functions on tensors: per-row log-likelihoods, the KL to the
prior, and one ELBO term over the rows a subset of modalities can see."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from jointspace.config import ConfigError

LIKELIHOODS = ("bernoulli", "gaussian", "multinomial")


def log_likelihood(kind: str, params: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row ``[B]`` log p(target | params) summed over features; ``params`` are the decoder's
    logits (bernoulli, multinomial) or means (gaussian, unit variance)."""
    params, target = params.flatten(1), target.flatten(1).to(params.dtype)
    if kind == "bernoulli":  # targets in [0, 1]: grey pixels are a continuous Bernoulli's mean
        return -F.binary_cross_entropy_with_logits(params, target, reduction="none").sum(1)
    if kind == "gaussian":
        return -0.5 * ((target - params) ** 2 + math.log(2 * math.pi)).sum(1)
    if kind == "multinomial":  # bag-of-words counts; the count-only coefficient is left out
        return (target * params.log_softmax(-1)).sum(1)
    raise ConfigError(f"unknown likelihood {kind!r}; known: {', '.join(LIKELIHOODS)}")


def mean_of(kind: str, params: torch.Tensor) -> torch.Tensor:
    """The likelihood's mean from the decoder's output: probabilities, or the Gaussian mean."""
    if kind == "bernoulli":
        return params.sigmoid()
    if kind == "multinomial":
        return params.softmax(-1)
    return params


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-row ``[B]`` KL(N(mu, exp(logvar)) || N(0, 1)) in closed form."""
    return 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)


def elbo_term(
    log_likelihoods: Mapping[str, torch.Tensor],
    present: Mapping[str, torch.Tensor],
    kl: torch.Tensor,
    rows: torch.Tensor,
    *,
    weights: Mapping[str, float] | None = None,
    beta: float = 1.0,
) -> torch.Tensor:
    """The mean negative ELBO over ``rows`` [B] bool: the weighted log-likelihoods of the
    modalities ``present`` in each row (absent ones count zero) minus ``beta`` times the KL."""
    weights = weights or {}
    reconstruction = torch.zeros_like(kl)
    for m, ll in log_likelihoods.items():
        reconstruction = reconstruction + weights.get(m, 1.0) * torch.where(
            present[m], ll, torch.zeros_like(ll)
        )
    per_row = -(reconstruction - beta * kl)
    if not bool(rows.any()):  # no row can be seen: a zero that still carries the graph
        return (per_row * 0).sum()
    return per_row[rows].mean()
