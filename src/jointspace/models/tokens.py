"""Token states: a tower's per-token (or per-patch) outputs and their validity mask."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

Tokens = tuple[
    torch.Tensor, torch.Tensor
]  # states [batch, length, dim], valid mask [batch, length]


def trim_tokens(states: torch.Tensor, mask: torch.Tensor) -> Tokens:
    """Drop the trailing columns that are padding in every row (they change nothing, cost time)."""
    valid = mask.any(dim=0).nonzero()
    length = int(valid.max()) + 1 if len(valid) else 1
    return states[:, :length], mask[:, :length]


def pad_tokens(chunks: Sequence[Tokens]) -> Tokens:
    """Concatenate token batches of different lengths, padding with masked-out zeros."""
    length = max(states.shape[1] for states, _ in chunks)
    states = [F.pad(s, (0, 0, 0, length - s.shape[1])) for s, _ in chunks]
    masks = [F.pad(m, (0, length - m.shape[1]), value=False) for _, m in chunks]
    return torch.cat(states), torch.cat(masks)
