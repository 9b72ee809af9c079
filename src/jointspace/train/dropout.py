"""Modality dropout: hide cells a row has, at random, so the space learns to do without them.

Each row draws from a generator seeded by (seed, step, row index): the same hidden cells on a
rerun, after a resume and whatever the number of processes. A hidden cell becomes an absent one
(``Batch.present`` False, a group id unique to the row); its input stays, unscored. A row never
loses its last modality.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from jointspace.data.collate import Batch

SALT = 0x4D44  # keeps this stream apart from others seeded by (seed, step, row)


def hide_cells(batch: Batch, dropout: Mapping[str, float], seed: int, step: int) -> Batch:
    """``batch`` with each present cell of modality m hidden with probability ``dropout[m]``,
    never a row's last present one; ``batch`` itself when nothing is to be hidden."""
    chances = {m: p for m, p in dropout.items() if p > 0 and m in batch.groups}
    if not chances:
        return batch
    order = sorted(batch.groups)  # fixed: the draws for each modality do not depend on dicts
    rows = batch.index.tolist()
    draws = torch.from_numpy(  # per row: [one per modality, the pick of the modality kept]
        np.stack(
            [np.random.default_rng([seed, step, i, SALT]).random(len(order) + 1) for i in rows]
        )
    )
    device = batch.index.device
    present = torch.stack([batch.has(m).cpu() for m in order], dim=1)  # [N, M]
    p = torch.tensor([chances.get(m, 0.0) for m in order], dtype=torch.float64)
    hidden = present & (draws[:, :-1] < p)
    # A row that would lose everything keeps one of its modalities, chosen at random.
    emptied = present.any(1) & ~(present & ~hidden).any(1)
    if emptied.any():
        counts = present[emptied].sum(1)
        pick = (draws[emptied, -1] * counts).long()  # the pick-th present modality of the row
        rank_in_row = present[emptied].cumsum(1) - 1
        keep = present[emptied] & (rank_in_row == pick[:, None])
        hidden[emptied] &= ~keep
    marks, groups = dict(batch.present), dict(batch.groups)
    unique = -1 - batch.index  # the collate's id for an absent cell: unique to the row
    for j, m in enumerate(order):
        if hidden[:, j].any():
            off = hidden[:, j].to(device)
            marks[m] = batch.has(m) & ~off
            groups[m] = torch.where(off, unique, batch.groups[m])
    return Batch(batch.inputs, groups, batch.index, marks)
