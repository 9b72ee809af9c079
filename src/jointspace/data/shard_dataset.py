"""Training samples streamed from shards: split by rank and worker, shuffled, resumable.

Shards are dealt to ranks, then to DataLoader workers, as WebDataset's ``split_by_node`` and
``split_by_worker`` do (``shards[rank::world]``, then ``[worker::workers]``), and that deal is the
same every epoch: each worker's sample count, hence the epoch's batch count, is known from the
index. Each epoch reorders each worker's shards and passes its samples through a seeded shuffle
buffer (WebDataset's ``shuffle``); a DataLoader takes one batch from each worker in turn, so the
batch at any position is known, and a resumed epoch skips exactly the batches already trained.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from jointspace.config import ConfigError
from jointspace.data.audio import AudioError
from jointspace.data.collate import ABSENT
from jointspace.data.dataset import Preprocess
from jointspace.data.image import ImageError, load_image
from jointspace.data.shard_set import Record, Shard, ShardSet
from jointspace.data.shards import ShardError


class ShardDataset(IterableDataset):
    """Yields ``{modality: preprocessed input, "_index": n, "_keys": {modality: content key}}``
    (``ABSENT`` for a cell the manifest row lacked).

    ``_keys`` are the caption itself and a hash of each medium's bytes, so rows sharing an image
    or a caption are masked as duplicates. ``batch_size`` is the loader's: an epoch has
    ``batches_per_epoch()`` batches on every rank (the smallest rank's count).
    """

    def __init__(
        self,
        shards: ShardSet | str,
        preprocess: Mapping[str, Preprocess],
        *,
        split: str | None = None,
        shuffle_buffer: int = 0,
        seed: int = 0,
        augment_seed: int | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        self.shards = shards if isinstance(shards, ShardSet) else ShardSet.open(shards)
        self.preprocess = dict(preprocess)
        held = self.shards.modalities
        missing = [m for m in self.preprocess if held and m not in held]
        if missing:
            raise ShardError(f"{self.shards.spec}: the shards hold no {missing[0]} for that tower")
        self.split, self.shuffle_buffer, self.seed = split, shuffle_buffer, seed
        self.augment_seed, self.batch_size = augment_seed, batch_size
        self.num_workers, self.rank, self.world_size = num_workers, rank, world_size
        self.total = self.shards.count(split)
        self.epoch, self.start_batch = 0, 0

    def __len__(self) -> int:
        """Samples of the split in all shards (every rank's together)."""
        return self.total

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Read epoch ``epoch`` from its sample ``start`` (a multiple of the batch size)."""
        if start % self.batch_size:
            raise ValueError(f"start {start} is not a multiple of the batch size {self.batch_size}")
        self.epoch, self.start_batch = epoch, start // self.batch_size

    def placement(self) -> tuple[int, int]:
        """This process's ``(rank, world size)``: as given, else torch.distributed's, or (0, 1)."""
        if self.rank is not None or self.world_size is not None:
            return self.rank or 0, self.world_size or 1
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def worker_shards(self, rank: int, world: int, worker: int, workers: int) -> list[Shard]:
        return self.shards.shards[rank::world][worker::workers]

    def worker_batches(self, rank: int, world: int) -> list[int]:
        """Whole batches each of this rank's workers makes in an epoch."""
        workers = max(1, self.num_workers)
        return [
            sum(s.count(self.split) for s in self.worker_shards(rank, world, w, workers))
            // self.batch_size
            for w in range(workers)
        ]

    def batches_per_epoch(self) -> int:
        """Batches per epoch on every rank: the least any rank can make, so ranks stay in step."""
        _, world = self.placement()
        per_rank = [sum(self.worker_batches(r, world)) for r in range(world)]
        if min(per_rank) < 1:
            rank = per_rank.index(min(per_rank))
            raise ConfigError(
                f"{self.shards.spec}: rank {rank} of {world} gets no whole batch of "
                f"{self.batch_size} (shards are dealt to ranks and workers whole: "
                f"{len(self.shards.shards)} shards, {max(1, self.num_workers)} workers); write "
                "more, smaller shards (--maxcount) or lower train.batch_size"
            )
        return min(per_rank)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, world = self.placement()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if workers != max(1, self.num_workers):
            raise ConfigError(
                f"the DataLoader runs {workers} workers; this dataset was planned for "
                f"{max(1, self.num_workers)} (pass num_workers to both)"
            )
        counts = self.worker_batches(rank, world)
        before, first = delivered(counts, self.start_batch)
        # A new DataLoader asks worker 0 first: worker 0 plays the one whose turn comes next.
        worker = (worker + first) % workers
        skip = before[worker]
        take = delivered(counts, self.batches_per_epoch())[0][worker] - skip
        stream = self._stream(rank, worker, workers, world)
        chosen = itertools.islice(stream, skip * self.batch_size, (skip + take) * self.batch_size)
        for record in chosen:
            yield self._sample(record)

    def _stream(self, rank: int, worker: int, workers: int, world: int) -> Iterator[Record]:
        """This worker's records of the split, in this epoch's order (nothing decoded yet)."""
        shards = self.worker_shards(rank, world, worker, workers)
        shuffled = self.shuffle_buffer > 0
        rng = np.random.default_rng([self.seed, self.epoch, rank, worker])
        if shuffled:
            shards = [shards[i] for i in rng.permutation(len(shards))]
        records = (
            record
            for shard in shards
            for record in self.shards.samples(shard)
            if self.split is None or record.split == self.split
        )
        if not shuffled:
            return records
        from webdataset.filters import shuffle

        seeded = random.Random(int(rng.integers(2**63)))
        return shuffle(self.shuffle_buffer, self.shuffle_buffer, rng=seeded)(records)

    def _sample(self, record: Record) -> dict[str, Any]:
        rng = None
        if self.augment_seed is not None:
            rng = np.random.default_rng([self.augment_seed, self.epoch, record.number])
        sample: dict[str, Any] = {"_index": record.number, "_keys": {}}
        for modality, fn in self.preprocess.items():
            if record.lacks(modality):  # an empty manifest cell: the collate fills it in
                sample[modality] = sample["_keys"][modality] = ABSENT
                continue
            try:
                sample[modality] = fn(raw_input(record, modality), rng)
            except (ImageError, AudioError) as err:
                raise ShardError(f"{record.where(modality)}: {err.reason}") from None
            sample["_keys"][modality] = record.content_key(modality)
        return sample


def raw_input(record: Record, modality: str) -> Any:
    """What a tower takes: the caption, a decoded image (the usual size and safety checks), or
    the audio bytes (decoded by the tower's loader, which reads only the frames it keeps)."""
    if modality == "text":
        return record.require_text()
    data = record.require(modality)
    if modality == "image":
        return load_image(data, name=record.where(modality))
    return data


def delivered(counts: list[int], stop: int) -> tuple[list[int], int]:
    """How many of each worker's batches are among the first ``stop`` a DataLoader yields, and
    the worker whose turn is next. It takes one from each worker in turn, passing over workers
    that have run out."""
    taken = [0] * len(counts)
    left, turn = stop, 0
    while True:
        active = [w for w, c in enumerate(counts) if c > turn]
        if not active:
            return taken, 0
        if left < len(active):
            for w in active[:left]:
                taken[w] += 1
            return taken, active[left]
        for w in active:
            taken[w] += 1
        left -= len(active)
        turn += 1
