"""Bidirectional triplet / margin ranking loss: sum of hinges (VSE0) or max violation (VSE++)."""

from __future__ import annotations

import torch

from jointspace.config import ConfigError
from jointspace.objectives.base import PairwiseObjective
from jointspace.objectives.miners import Triplets
from jointspace.registry import lookup

REDUCTIONS = ("sum", "max")


def hinges(scores: torch.Tensor, positives: torch.Tensor, margin: float) -> torch.Tensor:
    """``[N, N]`` hinge ``max(0, margin − s_ii + s_ik)`` of anchor i's true pair against each k;
    zero where k is a positive of i (the diagonal, shared images, duplicate captions)."""
    violation = (margin - scores.diagonal().unsqueeze(1) + scores).clamp_min(0)
    return violation.masked_fill(positives, 0.0)


def triplet_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    positives: torch.Tensor | None = None,
    margin: float = 0.2,
    reduction: str = "sum",
) -> torch.Tensor:
    """a→b plus b→a hinge loss over in-batch negatives, per anchor: ``sum`` of all hinges or
    only the ``max`` (hardest negative, Faghri et al. 2018); divided by the batch size."""
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"triplet_loss needs two [N, D] tensors of one shape, got {a.shape}, {b.shape}"
        )
    eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
    positives = eye if positives is None else positives | eye
    scores = a.float() @ b.float().T
    total = scores.new_zeros(())
    for s, p in ((scores, positives), (scores.T, positives.T)):
        h = hinges(s, p, margin)
        total = total + (h.sum() if reduction == "sum" else h.max(dim=1).values.sum())
    return total / len(a)


def margin_loss(scores: torch.Tensor, triplets: Triplets, margin: float) -> torch.Tensor:
    """Mean hinge ``max(0, margin − s[a, p] + s[a, n])`` over mined triplets (0 if none)."""
    anchors, pos, neg = triplets
    if len(anchors) == 0:
        return scores.sum() * 0.0  # keeps the graph: no triplet, no gradient
    return (margin - scores[anchors, pos] + scores[anchors, neg]).clamp_min(0).mean()


class TripletObjective(PairwiseObjective):
    """Triplet loss in both directions; ``miner`` (``all``, ``hardest``, ``semi_hard``) replaces
    the built-in ``reduction`` with mined triplets."""

    name = "triplet"

    def __init__(
        self,
        margin: float = 0.2,
        reduction: str = "sum",
        miner: str | None = None,
        anchor: str | None = None,
    ):
        super().__init__(anchor)
        if reduction not in REDUCTIONS:
            raise ConfigError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.margin, self.reduction = margin, reduction
        factory = lookup("miner", miner) if miner else None
        self.miner = None
        if factory is not None:
            self.miner = factory(margin) if miner == "semi_hard" else factory()

    def pair_loss(self, a, b, logit_scale, positives, logit_bias=None) -> torch.Tensor:
        if self.miner is None:
            return triplet_loss(a, b, positives, self.margin, self.reduction)
        eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
        positives = eye if positives is None else positives | eye
        scores = a.float() @ b.float().T
        both = [(scores, positives), (scores.T, positives.T)]
        forward, backward = (margin_loss(s, self.miner(s, p), self.margin) for s, p in both)
        return forward + backward
