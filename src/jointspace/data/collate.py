"""Batches: stacked inputs per modality plus group ids that mark rows sharing a value."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Batch:
    """``inputs[m]``: the tower input; ``groups[m]``: equal ids where rows share a cell value.

    Group ids hash the cell value, so they compare across batches and processes (gathered ranks).
    """

    inputs: dict[str, torch.Tensor]
    groups: dict[str, torch.Tensor]
    index: torch.Tensor

    def __len__(self) -> int:
        return len(self.index)

    def to(self, device: torch.device | str) -> Batch:
        inputs = {m: x.to(device) for m, x in self.inputs.items()}
        groups = {m: g.to(device) for m, g in self.groups.items()}
        return Batch(inputs, groups, self.index.to(device))


def make_collate(
    collators: Mapping[str, Callable[[list[Any]], torch.Tensor]],
) -> Callable[[list[dict]], Batch]:
    """A DataLoader ``collate_fn`` that stacks each modality with its tower's collator."""

    def collate(samples: list[dict]) -> Batch:
        inputs = {m: fn([s[m] for s in samples]) for m, fn in collators.items()}
        groups = {m: _factorize([s["_keys"][m] for s in samples]) for m in collators}
        index = torch.tensor([s["_index"] for s in samples], dtype=torch.long)
        return Batch(inputs, groups, index)

    return collate


def _factorize(keys: list[str]) -> torch.Tensor:
    # A stable hash, not a per-batch counter: ids gathered from other ranks must compare.
    return torch.tensor([group_id(k) for k in keys], dtype=torch.long)


def group_id(key: object) -> int:
    """A non-negative int64 that equal cell values share in every batch and every process."""
    text = key if isinstance(key, str) else repr(key)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)
