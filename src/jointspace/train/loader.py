"""Epochs of batches from streamed shards, beside the trainer's map-style manifest loader."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

from jointspace.config import TrainConfig
from jointspace.data.collate import Batch
from jointspace.data.dataset import PairedDataset
from jointspace.data.sampler import batches_per_epoch
from jointspace.data.shard_dataset import ShardDataset

TrainData = PairedDataset | ShardDataset


def epoch_batches(dataset: TrainData, batch_size: int) -> int:
    """Batches per epoch: whole batches of the rows, or what every rank's shards give."""
    if isinstance(dataset, ShardDataset):
        return dataset.batches_per_epoch()
    return batches_per_epoch(len(dataset), batch_size)


def shard_loader(
    dataset: ShardDataset,
    collate: Callable[[list[dict]], Batch],
    config: TrainConfig,
    epoch: int,
    start_batch: int,
) -> DataLoader:
    """Epoch ``epoch`` from its batch ``start_batch``; the dataset skips what came before."""
    if dataset.num_workers != config.num_workers:
        raise ValueError(
            f"the shard dataset was made for {dataset.num_workers} workers; train asks for "
            f"{config.num_workers}"
        )
    # Under torchrun each rank streams its share of the global batch (dataset.batch_size).
    dataset.set_epoch(epoch, start_batch * dataset.batch_size)
    # As for manifests: its own generator, so a resumed epoch draws the same worker seeds.
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    return DataLoader(
        dataset,
        batch_size=dataset.batch_size,
        drop_last=True,  # each worker's last partial batch: the dataset counts whole ones
        collate_fn=collate,
        num_workers=config.num_workers,
        generator=generator,
    )
