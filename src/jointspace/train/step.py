"""One training step's forward and backward: embed the batch, score it, backpropagate."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from jointspace.data.collate import Batch
from jointspace.models.joint import JointModel
from jointspace.objectives.masks import positive_pairs

# Joins other ranks' rows to the batch (train/distributed.py: World.gather).
Gather = Callable[[dict[str, torch.Tensor], Batch], tuple[dict[str, torch.Tensor], Batch]]


def total_loss(losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """A combined objective's weighted ``loss``; otherwise the sum of the ``*_loss`` terms."""
    if "loss" in losses:
        return losses["loss"]
    return torch.stack([v for k, v in losses.items() if k.endswith("_loss")]).sum()


def autocast(device: torch.device, precision: str):
    """bf16 autocast when asked for (CPU and GPU); a no-op context otherwise."""
    return torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16")


def forward_backward(
    model: JointModel,
    objective: nn.Module,
    batch: Batch,
    *,
    pooled: frozenset[str] = frozenset(),
    precision: str = "fp32",
    net: nn.Module | None = None,
    gather: Gather | None = None,
) -> dict[str, torch.Tensor]:
    """Losses of ``batch`` (``"loss"``: the total), with gradients accumulated in ``model``.

    ``net`` runs the forward (``model`` in DDP); ``gather`` scores against every rank's rows.
    """
    device = next(model.parameters()).device
    with autocast(device, precision):
        embeddings = (net or model)(batch.inputs, pooled=pooled)
        if gather is not None:
            embeddings, batch = gather(embeddings, batch)
        losses = objective(
            embeddings,
            logit_scale=model.logit_scale,
            logit_bias=model.logit_bias,
            positives=positive_pairs(batch.groups),
        )
    loss = total_loss(losses)
    if torch.isfinite(loss):  # a diverged step is refused by the trainer, not backpropagated
        loss.backward()
    return {**losses, "loss": loss}
