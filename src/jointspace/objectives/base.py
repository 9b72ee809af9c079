"""The objective contract: embeddings and the model's logits in, named loss terms out.

Objectives hold no parameters: the temperature (``logit_scale``) and SigLIP's ``logit_bias``
belong to the model, which passes them in (as OpenCLIP does).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn

from jointspace.config import ConfigError
from jointspace.objectives.masks import Positives, as_positives


class LogitInit(NamedTuple):
    """The logit scale (inverse temperature) and bias a model starts with for an objective."""

    scale: float
    bias: float


class PairwiseObjective(nn.Module):
    """A loss on every pair of modalities, averaged, returned as ``{"<name>_loss": tensor}``.

    Subclasses set ``name`` and implement ``pair_loss`` (on a dense positives mask) or
    ``pair_term`` (on :class:`Positives`, e.g. by tiles); ``used`` reports (detached) the
    temperature and bias they applied, which the trainer logs.
    """

    name = ""
    # Set by objectives that need the model's logit_bias: the values a new one starts from.
    logit_init: LogitInit | None = None
    # False where pair_loss ignores its positives: the dense mask is then never built.
    uses_positives = True

    def pair_loss(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        logit_scale: torch.Tensor | None,
        positives: torch.Tensor | None,
        logit_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def pair_term(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        logit_scale: torch.Tensor | None,
        logit_bias: torch.Tensor | None,
        positives: Positives | None,
    ) -> torch.Tensor:
        """One pair's loss: ``pair_loss`` on the dense ``[N, N]`` mask, built on first use."""
        dense = positives.dense() if positives is not None and self.uses_positives else None
        return self.pair_loss(a, b, logit_scale, dense, logit_bias)

    def used(
        self, logit_scale: torch.Tensor | None, logit_bias: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """``{"temperature": …, "logit_bias": …}`` as this objective applied them; {} if none."""
        return {}

    def forward(
        self,
        embeddings: Mapping[str, torch.Tensor],
        *,
        logit_scale: torch.Tensor | None = None,
        logit_bias: torch.Tensor | None = None,
        positives: torch.Tensor | Positives | None = None,
        groups: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``positives``: a bool ``[N, N]`` mask; or ``groups``: modality → int64 ``[N]`` ids
        (rows sharing an id in any modality are positives), made dense only where needed."""
        pairs = list(itertools.combinations(sorted(embeddings), 2))
        if not pairs:
            raise ConfigError(
                f"the {self.name} objective needs two modalities, got "
                f"{', '.join(sorted(embeddings)) or 'none'}: give model.towers two"
            )
        mask = as_positives(positives, groups)  # one per step: a dense mask is built once
        losses = [
            self.pair_term(embeddings[x], embeddings[y], logit_scale, logit_bias, mask)
            for x, y in pairs
        ]
        # Cloned: the optimizer updates the parameters in place after this step.
        used = {k: v.detach().clone() for k, v in self.used(logit_scale, logit_bias).items()}
        return {f"{self.name}_loss": torch.stack(losses).mean(), **used}


def check_pair(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    """Refuse anything but two ``[N, D]`` tensors of one shape."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"{name} needs two [N, D] tensors of one shape, got {a.shape}, {b.shape}")


def logit_init(objective: nn.Module) -> LogitInit | None:
    """What the first part of ``objective`` needing the model's logit bias starts it from."""
    for module in objective.modules():
        init = getattr(module, "logit_init", None)
        if init is not None:
            return init
    return None
