"""The objective contract: embeddings in (never the model), named loss terms out."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import torch
from torch import nn

from jointspace.config import ConfigError


class PairwiseObjective(nn.Module):
    """A loss on every pair of modalities, averaged, returned as ``{"<name>_loss": tensor}``.

    Subclasses set ``name`` and implement ``pair_loss``.
    """

    name = ""

    def pair_loss(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        logit_scale: torch.Tensor | None,
        positives: torch.Tensor | None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self,
        embeddings: Mapping[str, torch.Tensor],
        *,
        logit_scale: torch.Tensor | None = None,
        positives: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        pairs = list(itertools.combinations(sorted(embeddings), 2))
        if not pairs:
            raise ConfigError(
                f"the {self.name} objective needs two modalities, got "
                f"{', '.join(sorted(embeddings)) or 'none'}: give model.towers two"
            )
        losses = [
            self.pair_loss(embeddings[x], embeddings[y], logit_scale, positives) for x, y in pairs
        ]
        return {f"{self.name}_loss": torch.stack(losses).mean()}
