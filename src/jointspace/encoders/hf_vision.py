"""Any local Hugging Face vision encoder (ViT, DINOv2, ConvNeXt, a CLIP's vision half…) as an
image tower: its pooled output and a jointspace projection head, like ``hf_text`` for text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from jointspace.config import ConfigError
from jointspace.encoders.base import Tower
from jointspace.encoders.heads import projection_head
from jointspace.encoders.hf_files import (
    IMAGE_FILES,
    checkpoint_dir,
    find_layers,
    from_config,
    load_pretrained,
    read_files,
)
from jointspace.encoders.hf_preprocess import HFImageInputs, HFImageProcessor

ASSETS = "hf_vision"  # subdirectory of a saved model: backbone config + preprocessing
POOLINGS = ("pooler", "cls", "mean")


class HFVision(HFImageInputs, Tower):
    """``AutoModel`` vision backbone → pooled features (``pooling``) → projection ``head``."""

    modality = "image"
    built_args = ("backbone", "source")

    def __init__(
        self,
        embed_dim: int,
        backbone: nn.Module | None = None,
        source: Path | None = None,
        path: str = "",
        pooling: str = "pooler",
        head: str = "linear",
    ):
        super().__init__(embed_dim, dict(path=path, pooling=pooling, head=head))
        if pooling not in POOLINGS:
            raise ConfigError(
                f"hf_vision pooling must be one of {', '.join(POOLINGS)}: {pooling!r}"
            )
        if backbone is None or source is None:
            raise ConfigError("hf_vision is built by Tower.create from params {path: DIR}")
        self.hf_config = backbone.config
        # A dual encoder's directory (CLIP, SigLIP): its vision half.
        self.backbone = getattr(backbone, "vision_model", backbone)
        self.files = read_files(source, IMAGE_FILES)
        self.transform = HFImageProcessor.from_file(source / "preprocessor_config.json")
        self.pooling = pooling
        height, width = self.transform.size
        with torch.no_grad():  # the feature size, whatever the architecture calls it
            probe = self.backbone.eval()(pixel_values=torch.zeros(1, 3, height, width))
            dim = self._pool(probe).shape[-1]
        self.head = projection_head(int(dim), embed_dim, head)

    @classmethod
    def create(cls, embed_dim, params, *, corpus=None, assets_dir=None) -> HFVision:
        saved = assets_dir / ASSETS if assets_dir is not None else None
        if saved is not None and (saved / "config.json").is_file():
            return cls(embed_dim, from_config(saved), saved, **params)
        source = checkpoint_dir(params.get("path", ""), IMAGE_FILES, what="a vision encoder")
        return cls(embed_dim, load_pretrained(source), source, **params)

    def save_assets(self, directory: Path) -> None:
        from jointspace.encoders.hf_files import write_files

        write_files(directory / ASSETS, self.files)
        self.hf_config.save_pretrained(directory / ASSETS)

    def layers(self) -> list[nn.Module]:
        return find_layers(self.backbone)

    def _pool(self, out: Any) -> torch.Tensor:
        pooled = getattr(out, "pooler_output", None)
        if self.pooling == "pooler" and pooled is not None:
            return pooled.flatten(1)  # ConvNeXt-style pooled maps are [batch, dim, 1, 1]
        states = out.last_hidden_state
        if states.ndim == 4:  # a convolutional map [batch, channels, h, w]
            return states.mean(dim=(2, 3))
        return states[:, 0] if self.pooling == "cls" else states.mean(dim=1)

    def tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.backbone(pixel_values=images).last_hidden_state
        if states.ndim == 4:
            states = states.flatten(2).transpose(1, 2)
        return states, torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        return self._pool(self.backbone(pixel_values=images))
