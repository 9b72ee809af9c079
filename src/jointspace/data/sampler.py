"""Seeded, resumable batch order: a permutation per ``(seed, epoch)``, started at any batch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from jointspace.config import ConfigError


def batches_per_epoch(num_rows: int, batch_size: int, drop_last: bool = True) -> int:
    """How many batches one epoch over ``num_rows`` rows has."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if drop_last and num_rows < batch_size:
        raise ConfigError(
            f"batch_size {batch_size} is larger than the {num_rows} training rows; "
            "lower train.batch_size"
        )
    return num_rows // batch_size if drop_last else -(-num_rows // batch_size)


class EpochBatchSampler:
    """Yields lists of row indices; usable as a DataLoader ``batch_sampler``."""

    batches_per_epoch = staticmethod(batches_per_epoch)

    def __init__(
        self,
        num_rows: int,
        batch_size: int,
        *,
        seed: int,
        epoch: int = 0,
        start_batch: int = 0,
        drop_last: bool = True,
    ):
        if start_batch < 0:
            raise ValueError(f"start_batch must be 0 or more, got {start_batch}")
        self.total = batches_per_epoch(num_rows, batch_size, drop_last)
        self.num_rows, self.batch_size = num_rows, batch_size
        self.seed, self.epoch, self.start_batch = seed, epoch, start_batch

    def __len__(self) -> int:
        return max(0, self.total - self.start_batch)

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_rows)
        for b in range(self.start_batch, self.total):
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()
