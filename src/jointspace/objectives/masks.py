"""Which rows of a batch are positives of each other (shared image, identical caption, …)."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def positive_pairs(groups: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Bool ``[N, N]``: rows i, j are positives if they share a group id in any modality."""
    if not groups:
        raise ValueError("positive_pairs needs at least one modality's group ids")
    masks = [g.unsqueeze(0) == g.unsqueeze(1) for g in groups.values()]
    return torch.stack(masks).any(dim=0)
