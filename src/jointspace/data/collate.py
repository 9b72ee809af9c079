"""Batches: stacked inputs per modality, group ids that mark rows sharing a value, and which rows
hold each modality at all."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

# What a dataset gives for a cell the row lacks (an empty manifest cell), as input and as key.
# None, not a sentinel object: it must survive pickling to and from DataLoader workers.
ABSENT = None


@dataclass
class Batch:
    """``inputs[m]``: the tower input; ``groups[m]``: equal ids where rows share a cell value;
    ``present[m]``: bool ``[N]``, True where the row has modality ``m``.

    Group ids hash the cell value, so they compare across batches and processes (gathered ranks).
    An absent cell's input is a filler (another row's, never scored) and its group id is negative
    and unique to the row, so absent cells are never positives of anything. A modality no row
    holds is left out of ``inputs``. A modality missing from ``present`` is present in every row.
    """

    inputs: dict[str, torch.Tensor]
    groups: dict[str, torch.Tensor]
    index: torch.Tensor
    present: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.index)

    def to(self, device: torch.device | str) -> Batch:
        inputs = {m: x.to(device) for m, x in self.inputs.items()}
        groups = {m: g.to(device) for m, g in self.groups.items()}
        present = {m: p.to(device) for m, p in self.present.items()}
        return Batch(inputs, groups, self.index.to(device), present)

    def has(self, modality: str) -> torch.Tensor:
        """Bool ``[N]``: the rows holding ``modality`` (all of them when none is marked)."""
        if modality in self.present:
            return self.present[modality]
        return torch.ones(len(self), dtype=torch.bool, device=self.index.device)


def make_collate(
    collators: Mapping[str, Callable[[list[Any]], torch.Tensor]],
) -> Callable[[list[dict]], Batch]:
    """A DataLoader ``collate_fn`` that stacks each modality with its tower's collator.

    Absent cells (``ABSENT``) are filled with the first present row's input, so towers get one
    valid stacked tensor; ``Batch.present`` says which rows are real.
    """

    def collate(samples: list[dict]) -> Batch:
        index = torch.tensor([s["_index"] for s in samples], dtype=torch.long)
        inputs, groups, present = {}, {}, {}
        for m, fn in collators.items():
            has = [s[m] is not ABSENT for s in samples]
            present[m] = torch.tensor(has, dtype=torch.bool)
            groups[m] = _factorize([s["_keys"][m] for s in samples], index)
            if any(has):
                filler = samples[has.index(True)][m]
                inputs[m] = fn([s[m] if h else filler for s, h in zip(samples, has, strict=True)])
        return Batch(inputs, groups, index, present)

    return collate


def _factorize(keys: list[Any], index: torch.Tensor) -> torch.Tensor:
    # A stable hash, not a per-batch counter: ids gathered from other ranks must compare.
    # Absent cells: -1 - row index, unique to the row in any (gathered) batch.
    return torch.tensor(
        [group_id(k) if k is not ABSENT else -1 - int(i) for k, i in zip(keys, index, strict=True)],
        dtype=torch.long,
    )


def group_id(key: object) -> int:
    """A non-negative int64 that equal cell values share in every batch and every process."""
    text = key if isinstance(key, str) else repr(key)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)
