"""The objective contract: embeddings and the model's logits in, named loss terms out.

Objectives hold no parameters: the temperature (``logit_scale``) and SigLIP's ``logit_bias``
belong to the model, which passes them in (as OpenCLIP does).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
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
    """A loss on every pair of modalities (or, with ``anchor``, every pair holding that one),
    averaged, returned as ``{"<name>_loss": tensor}``.

    Subclasses set ``name`` and implement ``pair_loss`` (on a dense positives mask) or
    ``pair_term`` (on :class:`Positives`, e.g. by tiles); ``used`` reports (detached) the
    temperature and bias they applied, which the trainer logs.
    """

    name = ""
    # Set by objectives that need the model's logit_bias: the values a new one starts from.
    logit_init: LogitInit | None = None
    # False where pair_loss ignores its positives: the dense mask is then never built.
    uses_positives = True
    # The fewest rows a pair needs to be scored (when some rows lack a side).
    min_rows = 1

    def __init__(self, anchor: str | None = None):
        super().__init__()
        if anchor is not None and (not isinstance(anchor, str) or not anchor):
            raise ConfigError(
                f"objectives: {self.name} anchor must be a modality name, got {anchor!r}"
            )
        self.anchor = anchor

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
        present: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``positives``: a bool ``[N, N]`` mask; or ``groups``: modality → int64 ``[N]`` ids
        (rows sharing an id in any modality are positives), made dense only where needed.

        ``present``: modality → bool ``[N]`` (missing: every row). Each pair is scored over the
        rows holding both (a modality no row holds may be left out of ``embeddings``); a pair
        without such rows is skipped, and the loss is the mean over the pairs scored.
        """
        modalities = sorted({*embeddings, *(present or {})})
        pairs = self.pairs(modalities)
        mask = as_positives(positives, groups)  # one per step: a dense mask is built once
        losses = []
        for x, y in pairs:
            if x not in embeddings or y not in embeddings:
                continue  # no row of the batch holds one of them
            a, b = embeddings[x], embeddings[y]
            rows = rows_with_both(present, x, y)
            if rows is not None:  # some rows lack one side: score the others alone
                if int(rows.sum()) < self.min_rows:
                    continue
                a, b = a[rows], b[rows]
            part = mask if mask is None or rows is None else mask.subset(rows)
            losses.append(self.pair_term(a, b, logit_scale, logit_bias, part))
        # Cloned: the optimizer updates the parameters in place after this step.
        used = {k: v.detach().clone() for k, v in self.used(logit_scale, logit_bias).items()}
        return {f"{self.name}_loss": _mean(losses, embeddings), **used}

    def pairs(self, modalities: Sequence[str]) -> list[tuple[str, str]]:
        """The modality pairs scored: all of them, or those with the ``anchor`` (ImageBind)."""
        pairs = list(itertools.combinations(sorted(modalities), 2))
        if not pairs:
            raise ConfigError(
                f"the {self.name} objective needs two modalities, got "
                f"{', '.join(sorted(modalities)) or 'none'}: give model.towers two"
            )
        if self.anchor is None:
            return pairs
        if self.anchor not in modalities:
            raise ConfigError(
                f"objectives: {self.name} anchor {self.anchor!r} is not a modality of the model "
                f"({', '.join(sorted(modalities))})"
            )
        return [p for p in pairs if self.anchor in p]


def rows_with_both(
    present: Mapping[str, torch.Tensor] | None, x: str, y: str
) -> torch.Tensor | None:
    """Bool ``[N]`` rows holding both ``x`` and ``y``; None when every row does."""
    marks = [present[m] for m in (x, y) if present is not None and m in present]
    if not marks:
        return None
    rows = marks[0] & marks[1] if len(marks) == 2 else marks[0]
    return None if bool(rows.all()) else rows


def _mean(losses: list[torch.Tensor], embeddings: Mapping[str, torch.Tensor]) -> torch.Tensor:
    if losses:
        return torch.stack(losses).mean()
    # No pair had a row: zero, still joined to the graph so that backward runs as usual.
    zeros = [e.float().sum() * 0.0 for e in embeddings.values()]
    return torch.stack(zeros).sum() if zeros else torch.zeros(())


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
