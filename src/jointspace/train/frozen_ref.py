"""Which frozen weights a checkpoint may leave out: those its towers' source rebuilds exactly."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

import torch

from jointspace.errors import JointspaceError
from jointspace.models.build import build_tower
from jointspace.models.joint import JointModel

FrozenRefs = dict[str, dict]  # modality → {"fingerprint": str, "keys": [state keys]}
log = logging.getLogger("jointspace")


def frozen_keys(model: JointModel, modality: str) -> list[str]:
    """State keys of a locked tower's frozen part (everything outside its unlocked modules)."""
    tower = model.tower(modality)
    if not tower.locked:
        return []
    trainable = [name for name, module in tower.named_modules() if _is_unlocked(module, tower)]
    keys = []
    for key in tower.state_dict():
        if not any(p == "" or key == p or key.startswith(p + ".") for p in trainable):
            keys.append(f"towers.{modality}.{key}")
    return keys


def _is_unlocked(module: torch.nn.Module, tower) -> bool:
    return any(module is unlocked for unlocked in tower.unlocked)


def frozen_fingerprint(model: JointModel, keys: Iterable[str]) -> str:
    """A hash of the named weights of ``model`` (names and exact bytes)."""
    state = model.state_dict()
    digest = hashlib.blake2b(digest_size=16)
    for key in sorted(keys):
        if key not in state:
            return "missing:" + key
        flat = state[key].detach().cpu().contiguous().reshape(-1)
        digest.update(key.encode() + str(flat.dtype).encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def plan_frozen(model: JointModel) -> FrozenRefs:
    """The frozen parts a checkpoint can reference instead of storing.

    A tower qualifies when building it from its source (no saved assets, no corpus) gives
    exactly its frozen weights: pretrained towers do; a randomly initialised one does not,
    so its weights stay in every checkpoint.
    """
    refs: FrozenRefs = {}
    for modality in model.config.towers:
        keys = frozen_keys(model, modality)
        if not keys:
            continue
        fingerprint = frozen_fingerprint(model, keys)
        if _source_fingerprint(model, modality, keys) == fingerprint:
            refs[modality] = {"fingerprint": fingerprint, "keys": keys}
        else:
            log.debug(
                "frozen %s tower has no source to rebuild it: stored in checkpoints", modality
            )
    return refs


def _source_fingerprint(model: JointModel, modality: str, keys: list[str]) -> str | None:
    config = model.config
    # A fresh tower draws random numbers: keep the training RNG stream untouched.
    with torch.random.fork_rng(devices=[]):
        try:
            tower = build_tower(config.embed_dim, modality, config.towers[modality])
        except (JointspaceError, OSError, ValueError, ImportError):
            return None  # e.g. a text tower that needs a corpus: no source to rebuild from
    probe = JointModel({modality: tower}, config)
    return frozen_fingerprint(probe, keys)
