"""Training across processes on PyTorch's own launcher (torchrun) and DistributedDataParallel.

A ``World`` is this process's place in the job, read from the variables torchrun sets (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Without torchrun, or with one process, it is a
world of one: no process group, and every helper below is a no-op.

Each rank embeds its slice of the global batch; ``gather`` all-gathers the embeddings *with
gradient* (OpenCLIP's ``gather_with_grad``) and the group ids, so every rank computes the loss of
the whole global batch. The all-gather's backward sums the W identical copies of each row's
gradient and DDP averages over the W ranks, so the update is exactly the single-process update
on the concatenated batch. Rank 0 alone writes the run directory; the others wait at barriers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from jointspace.config import ConfigError, TrainConfig
from jointspace.data.collate import Batch
from jointspace.train.runlock import run_lock

log = logging.getLogger("jointspace")
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
RANK_SEED_STRIDE = 1_000_003  # rank r > 0 draws dropout from seed + r·stride; rank 0 from seed


@dataclass(frozen=True)
class World:
    """This process's rank among ``world_size`` (``local_rank`` on its machine) and its device.

    ``device`` is None in a world of one: the trainer then picks it from ``train.device``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: str = "auto", env: Mapping[str, str] = os.environ) -> World:
        """The world torchrun describes in ``env``; a world of one outside torchrun."""
        try:
            size = int(env.get("WORLD_SIZE", "1"))
            rank, local_rank = int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0"))
        except ValueError:
            shown = {k: env.get(k) for k in TORCHRUN_VARIABLES[:3]}
            raise ConfigError(f"the torchrun environment is not valid: {shown}") from None
        if size <= 1:
            return cls()
        return cls(rank, size, local_rank, _rank_device(device, local_rank))

    def check_config(self, config: TrainConfig) -> None:
        """Refuse what several ranks cannot run: a global batch they cannot split evenly."""
        self.check_batch(config.batch_size)

    def check_batch(self, batch_size: int) -> None:
        """Refuse a global batch that the ranks cannot split evenly."""
        if batch_size % self.world_size:
            raise ConfigError(
                f"train.batch_size {batch_size} is not divisible by the {self.world_size} "
                f"processes (WORLD_SIZE={self.world_size}): each rank takes an equal slice of the "
                "global batch; use a multiple of the process count"
            )

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def on_main(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on rank 0 only (what writes the run); None on other ranks."""
        return fn(*args, **kwargs) if self.is_main else None

    def lock(self, run_dir: Path) -> contextlib.AbstractContextManager:
        """The run lock, held by rank 0 only: the other ranks never write into ``run_dir``."""
        return run_lock(run_dir) if self.is_main else contextlib.nullcontext(run_dir)

    @contextlib.contextmanager
    def local_main_first(self) -> Iterator[None]:
        """Run the block on each machine's local rank 0 first, then on the others.

        For on-disk caches: the first process fills them, the rest read what it wrote.
        """
        if self.distributed and self.local_rank != 0:
            dist.barrier()
        yield
        if self.distributed and self.local_rank == 0:
            dist.barrier()

    def wrap(self, model: nn.Module, *, chunked: bool = False) -> nn.Module:
        """``model`` in DistributedDataParallel when there are several ranks; else itself.

        DDP broadcasts rank 0's weights at construction and averages gradients in backward.
        ``static_graph``: the loss uses ``logit_scale``/``logit_bias`` outside ``forward`` (which
        ``find_unused_parameters`` would mark unused, then fail on their gradient), and a tower
        may hold trainable weights its forward never uses (a pooler beside mean pooling); every
        step uses the same ones, which DDP learns in the first step.

        ``chunked`` (the gradient cache, train/gradcache.py): the replay reduces once, in its last
        chunk's backward, after the others ran under ``no_sync``. A static graph cannot take that
        (its first step queues the reduction on the first backward, a ``no_sync`` one: an internal
        assert; and the loss's own backward, where the logit scale gets its gradient, happens
        outside every reduced one), so unused parameters are found per step instead: the logit
        scale and bias lie outside the last chunk's graph, DDP leaves their gradients alone, and
        the cache averages them itself (train/gradcache.py).
        """
        if not self.distributed:
            return model
        cuda = self.device is not None and self.device.type == "cuda"
        ids = [self.device.index] if cuda and self.device is not None else None
        syncing = {"find_unused_parameters": True} if chunked else {"static_graph": True}
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, **syncing)

    def shard(self, batches: Iterable[list[int]]) -> Iterable[list[int]]:
        """This rank's contiguous slice of every global batch of row indices."""
        return batches if not self.distributed else RankSlices(batches, self)

    def gather(
        self, embeddings: dict[str, torch.Tensor], batch: Batch
    ) -> tuple[dict[str, torch.Tensor], Batch]:
        """Every rank's embeddings (with gradient), group ids and presence marks, concatenated
        in rank order.

        The returned batch holds the global group ids, presence marks and row indices; its
        inputs stay behind (they are embedded already). A modality none of this rank's rows
        holds (left out of its inputs) is sent as zeros marked absent, so every rank gathers the
        same modalities; one no rank holds stays out.
        """
        if not self.distributed:
            return embeddings, batch
        # Sorted: every rank must run the same collectives in the same order.
        present = {m: batch.has(m) for m in sorted({*embeddings, *batch.present})}
        held = {m: self._gather_plain(p.any().to(torch.uint8)[None]) for m, p in present.items()}
        embeddings = dict(embeddings)
        for m in [m for m in held if held[m].any() and m not in embeddings]:
            like = next(iter(embeddings.values()))
            embeddings[m] = like.new_zeros(like.shape, requires_grad=True)  # all ranks backward
        with warnings.catch_warnings():
            # Deprecated in favour of a private functional API; it is OpenCLIP's choice and
            # the one whose backward works on gloo (all-to-all) as well as nccl (reduce-scatter).
            warnings.simplefilter("ignore", FutureWarning)
            from torch.distributed.nn.functional import all_gather

            gathered = {m: torch.cat(all_gather(e)) for m, e in sorted(embeddings.items())}
        groups = {m: self._gather_plain(g) for m, g in sorted(batch.groups.items())}
        marks = {  # bool as uint8: not every backend gathers bool tensors
            m: self._gather_plain(p.to(torch.uint8)).bool() for m, p in sorted(present.items())
        }
        return gathered, Batch({}, groups, self._gather_plain(batch.index), marks)

    def _gather_plain(self, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def seed(self, seed: int) -> None:
        """Seed this rank's RNG: rank 0 as a single process would, the others each their own."""
        torch.manual_seed(seed + RANK_SEED_STRIDE * self.rank)

    def restore_rng(self, state: torch.Tensor | None, seed: int, step: int) -> None:
        """Restore this rank's RNG from a checkpoint, or reseed where the checkpoint has none."""
        if state is not None:
            torch.set_rng_state(state)
            return
        log.warning(
            "the checkpoint holds no RNG state for rank %d (it was saved by fewer processes): "
            "its dropout stream restarts from a seed",
            self.rank,
        )
        torch.manual_seed(seed + RANK_SEED_STRIDE * self.rank + step)

    def rng_states(self, state: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's RNG state (rank order), on every rank: checkpoints keep them all."""
        if not self.distributed:
            return [state]
        states: list[torch.Tensor | None] = [None] * self.world_size
        dist.all_gather_object(states, state)
        return [s for s in states if s is not None]

    def broadcast(self, value):
        """Rank 0's ``value`` on every rank (what rank 0 alone computed, e.g. an evaluation)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


class RankSlices:
    """Each global batch of row indices cut to one rank's contiguous, equal slice."""

    def __init__(self, batches: Iterable[list[int]], world: World):
        self.batches, self.world = batches, world

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list[int]]:
        rank, size = self.world.rank, self.world.world_size
        for rows in self.batches:
            per = len(rows) // size
            yield rows[rank * per : (rank + 1) * per]


@contextlib.contextmanager
def launched(device: str = "auto") -> Iterator[World]:
    """The world of this process, with its process group up for the block and torn down after.

    gloo on CPU, nccl on GPU; outside torchrun (or with one process) no group is started.
    Ranks after the first log warnings only: rank 0 speaks for the job.
    """
    world = World.from_env(device)
    if not world.distributed:
        yield world
        return
    assert world.device is not None
    if world.device.type == "cuda":
        torch.cuda.set_device(world.device)
        dist.init_process_group("nccl", device_id=world.device)
    else:
        dist.init_process_group("gloo")
    if not world.is_main:
        log.setLevel(logging.WARNING)
    try:
        yield world
    finally:
        dist.destroy_process_group()


def _rank_device(setting: str, local_rank: int) -> torch.device:
    # One GPU per process, chosen by LOCAL_RANK; gloo moves CPU tensors only.
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if setting in ("auto", "cuda") or setting.startswith("cuda:"):
        if torch.cuda.device_count() <= local_rank:
            raise ConfigError(
                f"LOCAL_RANK {local_rank} has no GPU: this machine has "
                f"{torch.cuda.device_count()}; start at most that many processes per node"
            )
        return torch.device("cuda", local_rank)
    raise ConfigError(
        f"train.device {setting!r} cannot train across processes: use cpu (gloo) or cuda (nccl)"
    )
