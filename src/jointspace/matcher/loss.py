"""Image-text matching (ITM): pick the true pair among hard negatives the bi-encoder confuses.

Negatives come from the bi-encoder's scores, as in ALBEF: the pairs it ranks highest but are not
matches are the ones the matcher must learn to push down.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jointspace.errors import InputError


def itm_loss(logits: torch.Tensor) -> torch.Tensor:
    """Listwise ITM: cross-entropy over each row's candidates, the match being column 0."""
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"need [queries, 1 + negatives] logits, got {tuple(logits.shape)}")
    target = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.float(), target)


class ITMLoss(nn.Module):
    """``{"itm_loss": itm_loss(logits)}`` for matcher logits with the match in column 0."""

    def forward(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"itm_loss": itm_loss(logits)}


def hard_negatives(
    scores: torch.Tensor,
    relevant: torch.Tensor,
    count: int,
    pool: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``count`` distinct columns per row, drawn uniformly from its ``pool`` best non-matches."""
    if scores.shape != relevant.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and relevant must have one shape")
    available = int((~relevant).sum(dim=1).min()) if len(relevant) else 0
    pool = min(pool, available)
    if pool < count:
        raise InputError(f"{count} negatives per query asked, but a query has only {available}")
    top = scores.masked_fill(relevant, float("-inf")).topk(pool, dim=1).indices
    picks = torch.rand(top.shape, generator=generator).argsort(dim=1)[:, :count]
    return top.gather(1, picks)


def sample_positives(
    relevant: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One matching column per row, uniformly among its matches."""
    if not relevant.any(dim=1).all():
        raise InputError("every query needs at least one matching item")
    return torch.multinomial(relevant.float(), 1, generator=generator).squeeze(1)
