"""Build a JointModel from its config: look up each tower by registered name."""

from __future__ import annotations

from pathlib import Path

from jointspace.config import ModelConfig
from jointspace.models.joint import JointModel
from jointspace.registry import lookup


def build_model(
    config: ModelConfig, *, corpus: list[str] | None = None, assets_dir: Path | None = None
) -> JointModel:
    """A freshly initialised model; ``corpus`` trains text assets, ``assets_dir`` loads them."""
    towers = {}
    for modality, tower_cfg in config.towers.items():
        factory = lookup("encoder", tower_cfg.name)
        if factory.modality != modality:
            raise ValueError(
                f"encoder {tower_cfg.name!r} encodes {factory.modality!r}, "
                f"but the config uses it for {modality!r}"
            )
        tower = factory.create(
            config.embed_dim, tower_cfg.params, corpus=corpus, assets_dir=assets_dir
        )
        if tower_cfg.lock or tower_cfg.unlock_last:
            tower.lock(tower_cfg.unlock_last)
        towers[modality] = tower
    return JointModel(towers, config)
