"""One training step's forward and backward: embed the batch, score it, backpropagate."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from jointspace.data.collate import Batch
from jointspace.models.joint import JointModel


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
) -> dict[str, torch.Tensor]:
    """Losses of ``batch`` (``"loss"``: the total), with gradients accumulated in ``model``."""
    device = next(model.parameters()).device
    with autocast(device, precision):
        embeddings = model(batch.inputs, pooled=pooled)
        losses = objective(
            embeddings,
            logit_scale=model.logit_scale,
            logit_bias=model.logit_bias,
            groups=batch.groups,
        )
    loss = total_loss(losses)
    if torch.isfinite(loss):  # a diverged step is refused by the trainer, not backpropagated
        loss.backward()
    return {**losses, "loss": loss}
