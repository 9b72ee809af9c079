"""Image towers: a small CNN and a small ViT, sharing Pillow/NumPy preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from jointspace.config import ConfigError
from jointspace.data.image import ImageTransform, load_image
from jointspace.encoders.base import Tower
from jointspace.encoders.heads import projection_head
from jointspace.encoders.transformer import transformer_stack

RGB_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


class ImageTower(Tower):
    """Shared image handling: load (path or PIL image) → resize/crop/normalise → stack."""

    modality = "image"

    def __init__(self, embed_dim: int, params: dict[str, Any]):
        super().__init__(embed_dim, params)
        mean, std = params.get("mean", RGB_MEAN_STD[0]), params.get("std", RGB_MEAN_STD[1])
        self.transform = ImageTransform(params["image_size"], tuple(mean), tuple(std))

    def preprocess(self, raw: Any, rng: np.random.Generator | None = None) -> torch.Tensor:
        return self.transform(load_image(raw), rng)

    def collate(self, items: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(items)

    def preprocessing(self) -> dict[str, Any]:
        return super().preprocessing() | {"transform": repr(self.transform)}


def conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: an image's embedding must not depend on its batch-mates.
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.GroupNorm(8, c_out), nn.GELU()
    )


def conv_stages(c_in: int, widths: Sequence[int]) -> nn.Sequential:
    """Two conv blocks per width; every stage after the first halves the resolution."""
    layers = []
    for i, width in enumerate(widths):
        layers += [conv_block(c_in, width, 1 if i == 0 else 2), conv_block(width, width, 1)]
        c_in = width
    return nn.Sequential(*layers)


def map_tokens(feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``[batch, channels, h, w]`` map as ``h·w`` tokens in reading order, all valid."""
    return all_valid(feature_map.flatten(2).transpose(1, 2))


def all_valid(states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``states`` with a mask that marks every token valid (no padding)."""
    return states, torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)


class SmallCNN(ImageTower):
    """Stages of two 3×3 conv blocks, each stage halving resolution, then global average pool."""

    def __init__(
        self,
        embed_dim: int,
        image_size: int = 32,
        widths: tuple[int, ...] | list[int] = (32, 64, 128),
        head: str = "linear",
    ):
        super().__init__(embed_dim, dict(image_size=image_size, widths=list(widths), head=head))
        self.features = conv_stages(3, widths)
        self.head = projection_head(widths[-1], embed_dim, head)

    def layers(self) -> list[nn.Module]:
        return list(self.features)

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images).mean(dim=(2, 3))

    def tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return map_tokens(self.features(images))


class SmallViT(ImageTower):
    """A small Vision Transformer: patch embedding, CLS token, pre-norm encoder."""

    def __init__(
        self,
        embed_dim: int,
        image_size: int = 32,
        patch_size: int = 4,
        width: int = 128,
        depth: int = 4,
        heads: int = 4,
        dropout: float = 0.0,
        head: str = "linear",
    ):
        if image_size % patch_size:
            raise ConfigError(
                f"image_size {image_size} is not a multiple of patch_size {patch_size}"
            )
        params = dict(image_size=image_size, patch_size=patch_size, width=width, depth=depth)
        super().__init__(embed_dim, params | dict(heads=heads, dropout=dropout, head=head))
        num_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, width, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, width) * 0.02)
        self.encoder = transformer_stack(width, depth, heads, dropout)
        self.norm = nn.LayerNorm(width)
        self.head = projection_head(width, embed_dim, head)

    def layers(self) -> list[nn.Module]:
        return list(self.encoder.layers)

    def tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.patch_embed(images).flatten(2).transpose(1, 2)
        # shape[0], not len(): an ONNX trace keeps the batch size free only through shape.
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return all_valid(self.norm(self.encoder(x)))

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        return self.tokens(images)[0][:, 0]
