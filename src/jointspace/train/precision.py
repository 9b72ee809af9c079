"""Mixed precision: autocast in bf16 (CPU and GPU) or fp16 with a loss scaler (GPU only)."""

from __future__ import annotations

import torch

from jointspace.config import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """Autocast to ``precision``'s dtype (bf16, fp16); a no-op context for fp32."""
    dtype = DTYPES.get(precision, torch.bfloat16)
    return torch.autocast(device.type, dtype, enabled=precision in DTYPES)


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16's loss scaler (its small range needs one); ``None`` for fp32 and bf16.

    fp16 is refused off a CUDA GPU: elsewhere bf16, with fp32's range and no scaler, is the choice.
    """
    if precision != "fp16":
        return None
    if device.type != "cuda":
        raise ConfigError(
            f"train.precision: fp16 needs a CUDA GPU and this run is on {device.type}; "
            "use bf16, which runs on CPU and GPU"
        )
    return torch.amp.GradScaler(device.type)


def backward(loss: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
    """``loss.backward()``, through the scaler when there is one."""
    (loss if scaler is None else scaler.scale(loss)).backward()


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    grad_clip: float | None,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Clip the (unscaled) gradient norm to ``grad_clip`` and step; a scaler skips inf steps."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if grad_clip:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
