"""One training step's forward and backward: embed the batch, score it, backpropagate."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from jointspace.data.collate import Batch
from jointspace.models.joint import JointModel
from jointspace.train.precision import autocast, backward

__all__ = ["autocast", "forward_backward", "idle_towers", "score", "total_loss"]

# Joins other ranks' rows to the batch (train/distributed.py: World.gather).
Gather = Callable[[dict[str, torch.Tensor], Batch], tuple[dict[str, torch.Tensor], Batch]]


def total_loss(losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """A combined objective's weighted ``loss``; otherwise the sum of the ``*_loss`` terms."""
    if "loss" in losses:
        return losses["loss"]
    return torch.stack([v for k, v in losses.items() if k.endswith("_loss")]).sum()


def score(
    model: JointModel,
    objective: nn.Module,
    embeddings: Mapping[str, torch.Tensor],
    batch: Batch,
) -> dict[str, torch.Tensor]:
    """The objective's loss terms for the embeddings of ``batch``, at the model's logits.

    Presence marks go to the objective only when some row lacks a modality: a complete batch
    is scored exactly as before they existed (and by objectives that take none).
    """
    complete = all(bool(p.all()) for p in batch.present.values())
    extra = {} if complete else {"present": batch.present}
    return objective(
        embeddings,
        logit_scale=model.logit_scale,
        logit_bias=model.logit_bias,
        groups=batch.groups,
        **extra,
    )


def forward_backward(
    model: JointModel,
    objective: nn.Module,
    batch: Batch,
    *,
    pooled: frozenset[str] = frozenset(),
    precision: str = "fp32",
    grad_cache_chunk: int | None = None,
    scaler: torch.amp.GradScaler | None = None,
    net: nn.Module | None = None,
    gather: Gather | None = None,
) -> dict[str, torch.Tensor]:
    """Losses of ``batch`` (``"loss"``: the total), with gradients accumulated in ``model``.

    ``net`` runs the forward (``model`` in DDP); ``gather`` scores against every rank's rows.
    With ``grad_cache_chunk`` smaller than the batch, the towers run that many rows at a time
    (train/gradcache.py): the same gradients in one chunk's activation memory. Under DDP it is
    taken at every step, even in one chunk, since a net wrapped for it (``World.wrap``) expects
    the logit scale's gradient outside its forward's graph.
    """
    ddp = isinstance(net, nn.parallel.DistributedDataParallel)
    if grad_cache_chunk is not None and (grad_cache_chunk < len(batch) or ddp):
        from jointspace.train.gradcache import cached_forward_backward  # it builds on this module

        return cached_forward_backward(
            model,
            objective,
            batch,
            chunk=grad_cache_chunk,
            pooled=pooled,
            precision=precision,
            scaler=scaler,
            net=net,
            gather=gather,
        )
    device = next(model.parameters()).device
    with autocast(device, precision):
        embeddings = (net or model)(batch.inputs, pooled=pooled, present=batch.present or None)
        if gather is not None:
            embeddings, batch = gather(embeddings, batch)
        losses = score(model, objective, embeddings, batch)
    loss = total_loss(losses)
    if ddp:
        loss = loss + idle_towers(model, batch)
    if torch.isfinite(loss):  # a diverged step is refused by the trainer, not backpropagated
        backward(loss, scaler)
    return {**losses, "loss": loss}


def idle_towers(model: JointModel, batch: Batch) -> torch.Tensor:
    """Zero, joined to the trainable weights of towers no row of ``batch`` fed (a modality all
    rows lack): DDP (static graph) needs a gradient for every weight on every rank."""
    idle = [
        p.sum() * 0.0
        for m, tower in model.towers.items()
        if m not in batch.inputs
        for p in tower.parameters()
        if p.requires_grad
    ]
    return torch.stack(idle).sum() if idle else torch.zeros((), device=model.logit_scale.device)
