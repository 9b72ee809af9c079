"""Gradient cache (Gao et al. 2021): a big batch's exact gradients in one chunk's activation memory.

The towers embed the batch in chunks without a graph; the loss runs once on all embeddings and
backpropagates to them (and to the model's logit scale and bias); then each chunk is embedded
again, with grad and the RNG state of its first pass (so dropout draws the same masks), and its
slice of the cached embedding gradient is backpropagated through the towers.

Under DDP every rank embeds its own rows, the embeddings are all-gathered with gradient before
the loss (as in the plain step), and the replay reduces gradients once: every chunk but the last
runs under ``no_sync``, so the towers' gradients accumulate locally and are averaged across ranks
in the last chunk's backward (docs/distributed.md, "The gradient cache").
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from jointspace.data.collate import Batch
from jointspace.models.joint import JointModel
from jointspace.train.precision import autocast, backward
from jointspace.train.step import Gather, score, total_loss

RngState = tuple[torch.Tensor, torch.Tensor | None]


def cached_forward_backward(
    model: JointModel,
    objective: nn.Module,
    batch: Batch,
    *,
    chunk: int,
    pooled: frozenset[str] = frozenset(),
    precision: str = "fp32",
    scaler: torch.amp.GradScaler | None = None,
    net: nn.Module | None = None,
    gather: Gather | None = None,
) -> dict[str, torch.Tensor]:
    """``forward_backward`` with the towers run ``chunk`` rows at a time: the same losses and
    gradients (up to float rounding) for any objective, since the loss sees the whole batch.

    ``net`` (``model`` in DDP) runs the replay; ``gather`` scores against every rank's rows.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    device = next(model.parameters()).device
    spans = [(start, min(start + chunk, len(batch))) for start in range(0, len(batch), chunk)]
    pieces = [rows(batch.inputs, start, stop, len(batch)) for start, stop in spans]
    marks = [{m: p[start:stop] for m, p in batch.present.items()} or None for start, stop in spans]
    # Pass 1: embeddings without a graph, remembering each chunk's RNG state for the replay
    # (the bare model: no graph, so nothing for DDP to reduce).
    stats = _running_stats(model)
    states, parts = [], []
    with torch.no_grad():
        for inputs, mark in zip(pieces, marks, strict=True):
            states.append(_rng_state(device))
            with autocast(device, precision):
                parts.append(model(inputs, pooled=pooled, present=mark))
    _restore(stats)  # batch-norm statistics move once per chunk, in the replay
    embeddings = {m: torch.cat([p[m] for p in parts]).requires_grad_() for m in parts[0]}
    del parts
    scored, everyone = gather(embeddings, batch) if gather is not None else (embeddings, batch)
    with autocast(device, precision):
        losses = score(model, objective, scored, everyone)
    del scored
    loss = total_loss(losses)
    if not torch.isfinite(loss):  # a diverged step is refused by the trainer, not backpropagated
        return {**losses, "loss": loss}
    backward(loss, scaler)  # the logit scale and bias get their gradients here, once
    forward = net or model
    if isinstance(forward, nn.parallel.DistributedDataParallel):
        _average_loss_grads(model, forward.process_group)
    grads = {m: e.grad for m, e in embeddings.items() if e.grad is not None}
    # Pass 2: each chunk again with a graph, fed its slice of the cached embedding gradient.
    # fork_rng leaves the RNG where the loss left it, as if each chunk had run once.
    cuda = [device] if device.type == "cuda" else []
    no_sync = getattr(forward, "no_sync", None)  # DDP: reduce once, in the last chunk's backward
    for number, ((start, stop), inputs, mark, state) in enumerate(
        zip(spans, pieces, marks, states, strict=True)
    ):
        last = number == len(spans) - 1
        syncing = contextlib.nullcontext() if last or no_sync is None else no_sync()
        with torch.random.fork_rng(devices=cuda), syncing:
            _set_rng_state(device, state)
            with autocast(device, precision):
                out = forward(inputs, pooled=pooled, present=mark)
            tracked = [m for m in grads if out[m].requires_grad]  # a fully frozen tower: none
            if tracked:
                torch.autograd.backward(
                    [out[m] for m in tracked], [grads[m][start:stop] for m in tracked]
                )
    return {**losses, "loss": loss}


def _average_loss_grads(model: JointModel, group: Any) -> None:
    # The logit scale and bias lie outside the replay's graphs, so DDP leaves their gradients
    # alone (World.wrap). Every rank computed them from the same loss of the same gathered rows;
    # averaging keeps the ranks' copies equal even where kernels round differently.
    for param in (model.logit_scale, model.logit_bias):
        if param is not None and param.grad is not None:
            dist.all_reduce(param.grad, group=group)
            param.grad.div_(dist.get_world_size(group))


def rows(x: Any, start: int, stop: int, n: int) -> Any:
    """Rows ``start:stop`` of a tower input of ``n`` rows: a tensor, or a mapping or sequence of
    them (a collate's output); tensors without ``n`` leading rows are shared by every chunk."""
    if isinstance(x, torch.Tensor):
        return x[start:stop] if x.ndim and len(x) == n else x
    if isinstance(x, Mapping):
        return {k: rows(v, start, stop, n) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(rows(v, start, stop, n) for v in x)
    return x


def _rng_state(device: torch.device) -> RngState:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device: torch.device, state: RngState) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _running_stats(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    # Norm layers that update running statistics in training mode (BatchNorm), even without grad.
    norms = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.training and m.track_running_stats
    ]
    return [(b, b.detach().clone()) for m in norms for b in m.buffers()]


def _restore(saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    with torch.no_grad():
        for buffer, value in saved:
            buffer.copy_(value)
