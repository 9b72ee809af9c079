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


class Positives:
    """Positives of a batch from group ids (or a given dense mask), dense or one block at a time.

    The ``[N, N]`` mask is built only when a naive loss asks for it; tiled losses ask for blocks.
    """

    def __init__(
        self,
        groups: Mapping[str, torch.Tensor] | None = None,
        dense: torch.Tensor | None = None,
    ):
        if (groups is None) == (dense is None):
            raise ValueError("give positives (a dense mask) or groups (ids), not both or neither")
        if groups is not None and not groups:
            raise ValueError("positives need at least one modality's group ids")
        self._groups = groups
        self._ids = [] if groups is None else list(groups.values())
        if len({len(g) for g in self._ids}) > 1:
            raise ValueError(f"group ids of unequal lengths: {[len(g) for g in self._ids]}")
        self._dense = dense

    def __len__(self) -> int:
        return len(self._ids[0]) if self._ids else len(self.dense())

    def dense(self) -> torch.Tensor:
        """Bool ``[N, N]``, built once on first use (the diagonal is True for group ids)."""
        if self._dense is None:
            assert self._groups is not None
            self._dense = positive_pairs(self._groups)
        return self._dense

    def block(self, rows: slice, cols: slice) -> torch.Tensor:
        """A new bool ``[rows, cols]`` block of the dense mask, computed from the ids alone."""
        if not self._ids:
            assert self._dense is not None
            return self._dense[rows, cols].clone()
        first, *rest = self._ids
        shared = first[rows, None] == first[None, cols]
        for g in rest:
            shared |= g[rows, None] == g[None, cols]
        return shared

    def subset(self, rows: torch.Tensor) -> Positives:
        """Positives among the rows a bool ``[N]`` mask keeps (a pair scored on some rows)."""
        if self._groups is not None:
            return Positives(groups={m: g[rows] for m, g in self._groups.items()})
        return Positives(dense=self.dense()[rows][:, rows])

    def partnered(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Bool ``[N]`` rows and columns that are positives of some *other* row: the only ones a
        block mask can change."""
        if not self._ids:
            off = self.dense().clone()
            off.fill_diagonal_(False)
            return off.any(1), off.any(0)
        partner = torch.zeros(len(self), dtype=torch.bool, device=self._ids[0].device)
        for g in self._ids:
            _, inverse, counts = torch.unique(g, return_inverse=True, return_counts=True)
            partner |= counts[inverse] > 1
        return partner, partner


def as_positives(
    positives: torch.Tensor | Positives | None = None,
    groups: Mapping[str, torch.Tensor] | None = None,
) -> Positives | None:
    """A dense mask or group ids (at most one) as :class:`Positives`; None when neither."""
    if isinstance(positives, Positives):
        if groups is not None:
            raise ValueError("give positives or groups, not both")
        return positives
    if positives is None and groups is None:
        return None
    return Positives(groups=groups, dense=positives)
