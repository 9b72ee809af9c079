"""Projection heads: map a tower's pooled features into the shared embedding space."""

from __future__ import annotations

from torch import nn

from jointspace.config import ConfigError


def projection_head(in_dim: int, out_dim: int, kind: str = "linear") -> nn.Module:
    """A linear map, an affine one (``affine``: with bias, as linear CCA fits), or a two-layer
    MLP (``mlp``) as in SimCLR-style heads."""
    if kind in ("linear", "affine"):
        return nn.Linear(in_dim, out_dim, bias=kind == "affine")
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim))
    raise ConfigError(f"unknown projection head {kind!r}; choose 'linear', 'affine' or 'mlp'")
