"""Training checkpoints: model files + optimizer tensors + JSON state, written atomically."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file
from torch import nn

from jointspace.atomic import atomic_dir
from jointspace.models.io import WEIGHTS_FILE, write_model_files
from jointspace.models.joint import JointModel

STATE_FILE = "trainer_state.json"
OPTIM_FILE, OBJECTIVE_FILE = "optimizer.safetensors", "objective.safetensors"
PREFIX = "step-"


def save_checkpoint(
    directory: Path,
    model: JointModel,
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    rng_state: torch.Tensor,
) -> Path:
    """Write ``directory/step-NNNNNNN`` atomically and return its path."""
    target = directory / f"{PREFIX}{state['step']:07d}"
    with atomic_dir(target) as tmp:
        write_model_files(model, tmp)
        save_file(_objective_state(objective), str(tmp / OBJECTIVE_FILE))
        tensors, layout = _flatten_optimizer(optimizer.state_dict())
        tensors["rng_state"] = rng_state
        save_file(tensors, str(tmp / OPTIM_FILE))
        (tmp / STATE_FILE).write_text(json.dumps({**state, "optimizer": layout}, indent=2))
    return target


def _objective_state(objective: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in objective.state_dict().items()}


def load_checkpoint(
    path: Path, model: JointModel, objective: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], torch.Tensor]:
    """Restore model, objective and optimizer in place; return the trainer state and RNG state."""
    load_model(model, str(path / WEIGHTS_FILE))
    objective.load_state_dict(load_file(str(path / OBJECTIVE_FILE)))
    state = json.loads((path / STATE_FILE).read_text())
    tensors = load_file(str(path / OPTIM_FILE))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state.pop("optimizer")))
    return state, tensors["rng_state"]


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint (temporary directories are never complete ones)."""
    found = sorted(p for p in directory.glob(f"{PREFIX}*") if p.is_dir())
    return found[-1] if found else None


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    found = sorted(p for p in directory.glob(f"{PREFIX}*") if p.is_dir())
    for old in found[: max(0, len(found) - keep)]:
        shutil.rmtree(old, ignore_errors=True)


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    # safetensors holds tensors only; scalars and param groups go to JSON beside them.
    tensors, scalars = {}, {}
    for index, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], layout: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in layout["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": layout["param_groups"]}
