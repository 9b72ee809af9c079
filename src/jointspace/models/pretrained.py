"""``model.pretrained: DIR``: one line that gives both towers of a local CLIP/SigLIP checkpoint.

The checkpoint's projections end its towers (``hf_clip_text``, ``hf_clip_image``); its projection
size is ``embed_dim`` and its logit scale (SigLIP: and bias) the model's, so zero-shot works
before any training.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch

from jointspace.artifacts import read_json
from jointspace.config import ConfigError, ModelConfig, TowerConfig, from_dict
from jointspace.encoders.hf_files import (
    CLIP_TYPES,
    IMAGE_FILES,
    checkpoint_dir,
    dual_kind,
    read_json_file,
    transformers_module,
)

TOWERS = {"text": "hf_clip_text", "image": "hf_clip_image"}


def expand_pretrained(config: ModelConfig, assets_dir: Path | None = None) -> ModelConfig:
    """``config`` with ``pretrained`` turned into its towers, embed_dim and logits.

    Towers named ``hf_clip_text``/``hf_clip_image`` in ``config.towers`` keep their ``lock``,
    ``unlock_last`` and extra params; other modalities' towers stay. A saved model (checkpoint)
    in ``assets_dir`` supplies the numbers, so resuming needs no second look at the directory.
    """
    if config.pretrained is None:
        return config
    path = str(Path(config.pretrained).expanduser().resolve())
    saved = _saved_config(assets_dir)
    if saved is not None and "text" in saved.towers:
        # The directory as the run first resolved it, whatever the working directory is now.
        path = str(saved.towers["text"].params.get("path", path))
    towers = _towers(config, path)
    if saved is not None:
        embed_dim, temperature, bias = (
            saved.embed_dim,
            saved.init_temperature,
            saved.init_logit_bias,
        )
    else:
        embed_dim, scale, bias = checkpoint_numbers(Path(path))
        temperature = math.exp(-scale)
    return dataclasses.replace(
        config,
        towers=towers,
        embed_dim=embed_dim,
        init_temperature=temperature,
        init_logit_bias=bias if bias is not None else config.init_logit_bias,
        pretrained=None,  # expanded: a saved model rebuilds from its own assets
    )


def is_dual_checkpoint(directory: Path) -> bool:
    """Whether ``directory`` holds a Hugging Face CLIP/SigLIP checkpoint, not a jointspace one."""
    try:
        meta = read_json_file(directory / "config.json")
    except ConfigError:
        return False
    return "format" not in meta and str(meta.get("model_type", "")).lower() in CLIP_TYPES


def _towers(config: ModelConfig, path: str) -> dict[str, TowerConfig]:
    # The default towers are what a config without `towers:` holds: they give way.
    given = {} if config.towers == ModelConfig().towers else dict(config.towers)
    for modality, name in TOWERS.items():
        tower = given.get(modality)
        if tower is not None and tower.name != name:
            raise ConfigError(
                f"model.towers.{modality}: {tower.name!r} conflicts with model.pretrained, which "
                f"gives the {modality} tower {name!r}; remove it, or name it {name!r} to set its "
                "lock / unlock_last"
            )
        tower = tower or TowerConfig(name)
        given[modality] = dataclasses.replace(tower, params={**tower.params, "path": path})
    return given


def _saved_config(assets_dir: Path | None) -> ModelConfig | None:
    path = assets_dir / "config.json" if assets_dir is not None else None
    if path is None or not path.is_file():
        return None
    return from_dict(ModelConfig, read_json(path).get("model"), str(path))


def checkpoint_numbers(directory: Path) -> tuple[int, float, float | None]:
    """(projection size, logit scale, logit bias or None) of a CLIP/SigLIP directory."""
    what = "a CLIP or SigLIP checkpoint"
    kind = dual_kind(checkpoint_dir(directory, what=what))
    checkpoint_dir(directory, ("tokenizer.json", *IMAGE_FILES), what=what)
    transformers = transformers_module()
    hf = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
    if kind == "siglip":
        dim = int(hf.vision_config.hidden_size)
        text_dim = int(
            getattr(hf.text_config, "projection_size", None) or hf.text_config.hidden_size
        )
        if text_dim != dim:
            raise ConfigError(f"{directory}: text projects to {text_dim}, vision to {dim}")
    else:
        dim = int(hf.projection_dim)
    values = read_tensors(directory, ("logit_scale", "logit_bias"))
    if "logit_scale" not in values:
        raise ConfigError(f"{directory}: the weights hold no logit_scale")
    bias = values.get("logit_bias") if kind == "siglip" else None
    return dim, values["logit_scale"], bias


def read_tensors(directory: Path, names: tuple[str, ...]) -> dict[str, float]:
    """Scalar weights by name from model.safetensors (sharded too) or pytorch_model.bin."""
    from safetensors import safe_open

    found: dict[str, float] = {}
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map: dict[str, Any] = read_json_file(index).get("weight_map", {})
        files = {name: directory / weight_map[name] for name in names if name in weight_map}
    elif (directory / "model.safetensors").is_file():
        files = dict.fromkeys(names, directory / "model.safetensors")
    else:
        state = torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
        return {n: float(state[n].reshape(-1)[0]) for n in names if n in state}
    for name, file in files.items():
        with safe_open(str(file), framework="pt") as f:
            if name in f.keys():  # noqa: SIM118 (safe_open is no mapping)
                found[name] = float(f.get_tensor(name).reshape(-1)[0])
    return found
