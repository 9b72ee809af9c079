"""Fusion heads: several modalities' features combined into one vector (issue 18, first slice).

Every head takes ``{modality: (states [B, T, d_m], keep [B, T] bool)}`` — a tower's token states
(``Tower.tokens``) or its pooled vector as one token — and returns the fused ``[B, width]`` and
the modalities it used. A modality left out of the mapping is missing: every head still answers.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import torch
from torch import nn

from jointspace.config import ConfigError, PartConfig
from jointspace.encoders.text import pool_tokens
from jointspace.registry import lookup

Inputs = Mapping[str, tuple[torch.Tensor, torch.Tensor]]


class FusionHead(nn.Module):
    """Projects each known modality to ``width``; subclasses combine the projections."""

    def __init__(self, dims: Mapping[str, int], width: int = 128):
        super().__init__()
        if not dims:
            raise ConfigError("a fusion head needs at least one modality")
        self.modalities, self.width = sorted(dims), width
        self.project = nn.ModuleDict({m: nn.Linear(dims[m], width) for m in self.modalities})

    def present(self, inputs: Inputs) -> list[str]:
        """The known modalities given, in a fixed order; unknown ones are a clear error."""
        if unknown := sorted(set(inputs) - set(self.modalities)):
            raise ConfigError(
                f"fusion head: unknown modality {unknown[0]!r}; it knows {self.modalities}"
            )
        if not inputs:
            raise ConfigError("fusion head: no modality given")
        return [m for m in self.modalities if m in inputs]

    def pooled(self, inputs: Inputs) -> dict[str, torch.Tensor]:
        """Each given modality as one projected vector: the mean of its kept tokens."""
        return {m: self.project[m](pool_tokens(*inputs[m], "mean")) for m in self.present(inputs)}


class ConcatFusion(FusionHead):
    """Projections side by side (a learned stand-in for a missing one), then an MLP."""

    def __init__(self, dims: Mapping[str, int], width: int = 128):
        super().__init__(dims, width)
        self.missing = nn.Parameter(torch.zeros(len(self.modalities), width))
        self.mix = nn.Sequential(nn.Linear(len(self.modalities) * width, width), nn.GELU())

    def forward(self, inputs: Inputs) -> tuple[torch.Tensor, list[str]]:
        vectors = self.pooled(inputs)
        batch = next(iter(vectors.values())).shape[0]
        parts = [
            vectors[m] if m in vectors else self.missing[i].expand(batch, -1)
            for i, m in enumerate(self.modalities)
        ]
        return self.mix(torch.cat(parts, dim=-1)), list(vectors)


class GatedFusion(FusionHead):
    """A weighted sum of the projections; the weights (a softmax over the modalities given) are
    learned per sample from the projections themselves."""

    def __init__(self, dims: Mapping[str, int], width: int = 128):
        super().__init__(dims, width)
        self.gate = nn.ModuleDict({m: nn.Linear(width, 1) for m in self.modalities})

    def weights(self, inputs: Inputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``[B, M]`` gate weights over the given modalities (rows sum to 1), and the vectors."""
        vectors = self.pooled(inputs)
        logits = torch.cat([self.gate[m](v) for m, v in vectors.items()], dim=-1)
        return logits.softmax(dim=-1), vectors

    def forward(self, inputs: Inputs) -> tuple[torch.Tensor, list[str]]:
        weights, vectors = self.weights(inputs)
        stacked = torch.stack(list(vectors.values()), dim=1)  # [B, M, width]
        return (weights.unsqueeze(-1) * stacked).sum(1), list(vectors)


class AttentionFusion(FusionHead):
    """Single-stream: every given modality's tokens, projected and marked with a type embedding,
    in one transformer after a learned query token whose output is the fused vector. Padding is
    masked out of attention, so it never changes the result."""

    def __init__(self, dims: Mapping[str, int], width: int = 128, depth: int = 1, heads: int = 4):
        super().__init__(dims, width)
        if width % heads:
            raise ConfigError(f"attention fusion: width {width} is not divisible by heads {heads}")
        self.query = nn.Parameter(torch.zeros(1, 1, width))
        self.types = nn.Parameter(torch.randn(len(self.modalities), width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)

    def forward(self, inputs: Inputs) -> tuple[torch.Tensor, list[str]]:
        used = self.present(inputs)
        tokens, keeps = [], []
        for m in used:
            states, keep = inputs[m]
            tokens.append(self.project[m](states) + self.types[self.modalities.index(m)])
            keeps.append(keep.bool())
        batch = tokens[0].shape[0]
        tokens.insert(0, self.query.expand(batch, -1, -1))
        keeps.insert(0, torch.ones(batch, 1, dtype=torch.bool, device=tokens[0].device))
        padding = ~torch.cat(keeps, dim=1)  # True where attention must not look
        out = self.encoder(torch.cat(tokens, dim=1), src_key_padding_mask=padding)
        return out[:, 0], used


class FusionClassifier(nn.Module):
    """A fusion head and a small MLP to class logits (what the modalities mean *together* — an
    XOR of a text and an image feature — is not linear in a gated sum)."""

    def __init__(self, head: FusionHead, classes: int):
        super().__init__()
        width = head.width
        self.head = head
        self.out = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, classes))

    def forward(self, inputs: Inputs) -> tuple[torch.Tensor, list[str]]:
        fused, used = self.head(inputs)
        return self.out(fused), used


def build_fusion_head(config: PartConfig, dims: Mapping[str, int]) -> FusionHead:
    """The head ``config`` names (registry kind ``fusion``) over modalities of widths ``dims``."""
    factory = lookup("fusion", config.name)
    taken = [p for p in inspect.signature(factory).parameters if p != "dims"]
    if unknown := sorted(set(config.params) - set(taken)):
        raise ConfigError(
            f"head.params: fusion head {config.name!r} has no parameter {unknown[0]!r}; "
            f"it takes {', '.join(taken)}"
        )
    return factory(dims, **config.params)
