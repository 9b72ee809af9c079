"""Weighted sums of objectives: each term is returned (and logged) under its own name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from jointspace.config import ObjectiveConfig
from jointspace.objectives.masks import Positives, as_positives
from jointspace.registry import build


class CombinedObjective(nn.Module):
    """``loss = Σ weight_i · term_i``; returns every unweighted term plus the total ``loss``."""

    def __init__(self, parts: Sequence[nn.Module], weights: Sequence[float]):
        super().__init__()
        if len(parts) != len(weights) or not parts:
            raise ValueError(f"need one weight per objective, got {len(parts)} and {len(weights)}")
        self.parts, self.weights = nn.ModuleList(parts), list(weights)

    def forward(
        self,
        embeddings: Mapping[str, torch.Tensor],
        *,
        logit_scale: torch.Tensor | None = None,
        logit_bias: torch.Tensor | None = None,
        positives: torch.Tensor | Positives | None = None,
        groups: Mapping[str, torch.Tensor] | None = None,
        present: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        # One Positives for every part: a dense mask, where needed, is built once.
        mask = as_positives(positives, groups)
        terms: dict[str, torch.Tensor] = {}
        total = None
        for index, (part, weight) in enumerate(zip(self.parts, self.weights, strict=True)):
            out = part(
                embeddings,
                logit_scale=logit_scale,
                logit_bias=logit_bias,
                positives=mask,
                present=present,
            )
            for name, value in out.items():
                # Two objectives of one kind (say triplet sum and max) keep separate names.
                if name in terms:
                    is_loss = name.endswith("_loss")
                    base = name.removesuffix("_loss") if is_loss else name
                    key = f"{base}{index}_loss" if is_loss else f"{base}{index}"
                else:
                    key = name
                terms[key] = value
                if name.endswith("_loss"):
                    total = weight * value if total is None else total + weight * value
        if total is None:
            raise ValueError("none of the objectives returned a '…_loss' term")
        return terms | {"loss": total}


def build_objective(configs: Sequence[ObjectiveConfig]) -> nn.Module:
    """One objective as itself (weight 1), several as a :class:`CombinedObjective`."""
    parts = [build("objective", c.name, **c.params) for c in configs]
    if len(parts) == 1 and configs[0].weight == 1.0:
        return parts[0]
    return CombinedObjective(parts, [c.weight for c in configs])
