"""Build a JointModel from its config: look up each tower by registered name."""

from __future__ import annotations

from pathlib import Path

from jointspace.artifacts import read_json
from jointspace.config import ConfigError, ModelConfig, TowerConfig
from jointspace.encoders.base import Tower
from jointspace.errors import ArtifactError
from jointspace.models.joint import JointModel
from jointspace.models.pretrained import expand_pretrained
from jointspace.registry import lookup

# In a slim checkpoint: the towers whose frozen weights are rebuilt from their source.
FROZEN_FILE = "frozen.json"


def build_model(
    config: ModelConfig, *, corpus: list[str] | None = None, assets_dir: Path | None = None
) -> JointModel:
    """A freshly initialised model; ``corpus`` trains text assets, ``assets_dir`` loads them.

    Towers that a slim checkpoint in ``assets_dir`` lists in ``frozen.json`` are built from
    their source (e.g. the pretrained checkpoint) instead: the checkpoint lacks their weights.
    ``model.pretrained`` is expanded into its towers first (models/pretrained.py).
    """
    config = expand_pretrained(config, assets_dir)
    from_source = frozen_towers(assets_dir) if assets_dir is not None else {}
    towers = {}
    for modality, tower_cfg in config.towers.items():
        assets = None if modality in from_source else assets_dir
        towers[modality] = build_tower(config.embed_dim, modality, tower_cfg, corpus, assets)
    return JointModel(towers, config)


def build_tower(
    embed_dim: int,
    modality: str,
    tower_cfg: TowerConfig,
    corpus: list[str] | None = None,
    assets_dir: Path | None = None,
) -> Tower:
    """One tower, locked as configured."""
    factory = lookup("encoder", tower_cfg.name)
    if factory.modality != modality:
        raise ConfigError(
            f"encoder {tower_cfg.name!r} encodes {factory.modality!r}, "
            f"but the config uses it for {modality!r}"
        )
    taken = factory.param_names()
    if unknown := sorted(set(tower_cfg.params) - set(taken)):
        # Caught here, not as the constructor's TypeError: that would hide real bugs too.
        raise ConfigError(
            f"model.towers.{modality}.params: encoder {tower_cfg.name!r} has no parameter "
            f"{unknown[0]!r}; it takes {', '.join(taken)}"
        )
    tower = factory.create(embed_dim, tower_cfg.params, corpus=corpus, assets_dir=assets_dir)
    if tower_cfg.lock or tower_cfg.unlock_last:
        tower.lock(tower_cfg.unlock_last)
    return tower


def frozen_towers(directory: Path) -> dict[str, dict]:
    """``{modality: {"fingerprint", "keys"}}`` from ``directory/frozen.json`` (empty if absent)."""
    path = directory / FROZEN_FILE
    if not path.is_file():
        return {}
    towers = read_json(path).get("towers")
    if not isinstance(towers, dict) or not all(isinstance(v, dict) for v in towers.values()):
        raise ArtifactError(f"{path}: damaged: no 'towers' mapping")
    return towers
