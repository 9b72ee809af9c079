"""Training checkpoints: model files + optimizer tensors + JSON state, written atomically.

Checkpoints are slim: the weights of frozen towers that can be rebuilt from their source (a
pretrained checkpoint) are left out and referenced by fingerprint in ``frozen.json``; loading
rebuilds them and refuses if the source no longer gives the same weights.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from jointspace.artifacts import load_tensors, read_json, save_tensors
from jointspace.atomic import atomic_dir, write_bytes
from jointspace.errors import ArtifactError
from jointspace.models.build import FROZEN_FILE, frozen_towers
from jointspace.models.io import WEIGHTS_FILE, load_weights, read_model_config, write_model_files
from jointspace.models.joint import JointModel
from jointspace.train.frozen_ref import FrozenRefs, frozen_fingerprint
from jointspace.train.legacy import migrate_objective_logits

STATE_FILE = "trainer_state.json"
OPTIM_FILE, OBJECTIVE_FILE = "optimizer.safetensors", "objective.safetensors"
PREFIX = "step-"
DAMAGED_PREFIX = "damaged-"
NAME = re.compile(rf"^{PREFIX}\d{{7}}$")
STATE_KEYS = ("step", "num_rows", "total_steps", "optimizer")
log = logging.getLogger("jointspace")
_warned: set[Path] = set()


class FrozenSourceChanged(ArtifactError):
    """The source of a frozen tower no longer gives the weights a checkpoint was trained with."""


def save_checkpoint(
    directory: Path,
    model: JointModel,
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    rng_state: torch.Tensor | Sequence[torch.Tensor],
    frozen: FrozenRefs | None = None,
) -> Path:
    """Write ``directory/step-NNNNNNN`` atomically and return its path.

    Weights named in ``frozen`` (towers rebuilt from their source) are not written.
    ``rng_state`` is one state, or one per rank of a distributed run (rank order).
    """
    target = directory / f"{PREFIX}{state['step']:07d}"
    left_out = {key for ref in (frozen or {}).values() for key in ref["keys"]}
    keys = [k for k in model.state_dict() if k not in left_out]
    with atomic_dir(target) as tmp:
        write_model_files(model, tmp, keys)
        if frozen:
            towers = {
                m: {"fingerprint": r["fingerprint"], "keys": r["keys"]} for m, r in frozen.items()
            }
            write_bytes(tmp / FROZEN_FILE, json.dumps({"towers": towers}, indent=1).encode())
        save_tensors(tmp / OBJECTIVE_FILE, _objective_state(objective))
        tensors, layout = _flatten_optimizer(optimizer.state_dict())
        for rank, rng in enumerate([rng_state] if torch.is_tensor(rng_state) else rng_state):
            tensors[_rng_key(rank)] = rng
        save_tensors(tmp / OPTIM_FILE, tensors)
        text = json.dumps({**state, "optimizer": layout}, indent=2)
        write_bytes(tmp / STATE_FILE, text.encode())
    return target


def scaler_state(scaler: torch.amp.GradScaler | None) -> dict[str, Any]:
    """``{"scaler": …}`` for a checkpoint's state: fp16's loss scale and growth count; or {}."""
    if scaler is None or not scaler.is_enabled():
        return {}
    return {"scaler": scaler.state_dict()}


def _objective_state(objective: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in objective.state_dict().items()}


def _rng_key(rank: int) -> str:
    return "rng_state" if rank == 0 else f"rng_state.rank{rank}"


def load_checkpoint(
    path: Path,
    model: JointModel,
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    *,
    rank: int = 0,
) -> tuple[dict[str, Any], torch.Tensor | None]:
    """Restore model, objective, optimizer (and the fp16 loss scaler, when both have one) in
    place; return the trainer state and ``rank``'s RNG state.

    The RNG state is ``rank``'s (None if the run that saved it had no such rank). A damaged
    checkpoint, or frozen weights that differ from the ones it was trained with, raise
    ``ArtifactError`` before anything is changed.
    """
    state = read_state(path)
    referenced = frozen_towers(path)
    for modality, ref in referenced.items():
        keys = ref.get("keys", [])
        if frozen_fingerprint(model, keys) != ref.get("fingerprint"):
            raise FrozenSourceChanged(
                f"{path}: the frozen {modality} tower's weights differ from those this checkpoint "
                "was trained with (its source changed); restore that source or train afresh"
            )
    missing = {key for ref in referenced.values() for key in ref.get("keys", [])}
    weights = load_tensors(path / WEIGHTS_FILE)
    objective_state = load_tensors(path / OBJECTIVE_FILE)
    tensors = load_tensors(path / OPTIM_FILE)
    if "rng_state" not in tensors:
        raise ArtifactError(f"{path / OPTIM_FILE}: damaged: no 'rng_state' tensor")
    try:
        optim_state = _unflatten_optimizer(tensors, state.pop("optimizer"))
    except (KeyError, ValueError, TypeError, AttributeError):
        raise ArtifactError(f"{path / STATE_FILE}: damaged optimizer layout") from None
    try:
        optim_state = migrate_objective_logits(
            model, objective, weights, objective_state, optim_state, optimizer
        )
    except ValueError as err:
        raise ArtifactError(f"{path}: cannot read this older checkpoint: {err}") from None
    load_weights(model, path / WEIGHTS_FILE, weights, missing=missing)
    try:
        objective.load_state_dict(objective_state)
        optimizer.load_state_dict(optim_state)
        scaler_state = state.pop("scaler", None)
        if scaler is not None and scaler.is_enabled() and scaler_state:
            scaler.load_state_dict(scaler_state)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[-1].strip() if str(err).strip() else "mismatch"
        raise ArtifactError(f"{path}: optimizer or objective state does not fit: {first}") from None
    return state, tensors.get(_rng_key(rank))


def read_state(path: Path) -> dict[str, Any]:
    """``trainer_state.json`` of a checkpoint: step, rows, total steps, best, optimizer layout."""
    state = read_json(path / STATE_FILE)
    missing = [k for k in STATE_KEYS if k not in state]
    if missing or not all(isinstance(state[k], int) for k in STATE_KEYS[:3]):
        raise ArtifactError(f"{path / STATE_FILE}: damaged: {missing[0] if missing else 'types'}")
    return state


def check_checkpoint(path: Path) -> None:
    """Cheap structural check (JSON files parse, safetensors headers cover their files)."""
    read_state(path)
    read_model_config(path)
    frozen_towers(path)
    for name in (WEIGHTS_FILE, OBJECTIVE_FILE, OPTIM_FILE):
        try:
            with safe_open(str(path / name), framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else "unreadable"
            raise ArtifactError(f"{path / name}: damaged or truncated ({reason})") from None


def list_checkpoints(directory: Path) -> list[Path]:
    """Every checkpoint directory, oldest first (temporary and set-aside ones excluded)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if NAME.match(p.name) and p.is_dir())


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest checkpoint that passes ``check_checkpoint``; damaged newer ones are warned of."""
    for path in reversed(list_checkpoints(directory)):
        try:
            check_checkpoint(path)
        except ArtifactError as err:
            warn_damaged(path, err)
            continue
        return path
    return None


def warn_damaged(path: Path, err: Exception) -> None:
    if path not in _warned:
        _warned.add(path)
        log.warning("skipping damaged checkpoint %s: %s", path, err)


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint to ``damaged-step-…`` so it is kept but never resumed."""
    target = path.with_name(DAMAGED_PREFIX + path.name)
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{DAMAGED_PREFIX}{path.name}.{n}")
    path.rename(target)
    return target


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    found = list_checkpoints(directory)
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
