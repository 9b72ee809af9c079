"""A Hugging Face image processor's steps (preprocessor_config.json) in Pillow and NumPy.

Resize (shortest edge or fixed size), centre crop, rescale, normalise: the order and arithmetic of
transformers' PIL backend, so pixels match ``CLIPImageProcessor`` / ``SiglipImageProcessor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from jointspace.config import ConfigError
from jointspace.data.image import ImageTransform, load_image

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class HFImageProcessor:
    """The deterministic steps of an HF image processor; ``augment`` with an rng for training."""

    resize: tuple[str, int, int] | None  # ("shortest", n, 0) or ("fixed", height, width)
    crop: tuple[int, int] | None  # (height, width)
    resample: int
    rescale: float | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @property
    def size(self) -> tuple[int, int]:
        """Height and width of the output."""
        if self.crop is not None:
            return self.crop
        if self.resize is not None and self.resize[0] == "fixed":
            return self.resize[1], self.resize[2]
        raise ConfigError("preprocessor_config.json: neither crop_size nor a fixed size is set")

    @classmethod
    def from_file(cls, path: Path) -> HFImageProcessor:
        from jointspace.encoders.hf_files import read_json_file

        return cls.from_dict(read_json_file(path), str(path))

    @classmethod
    def from_dict(
        cls, raw: dict[str, Any], where: str = "preprocessor_config.json"
    ) -> HFImageProcessor:
        siglip = "siglip" in str(raw.get("image_processor_type", "")).lower()
        try:
            resize = _resize(raw.get("size"), siglip) if raw.get("do_resize", True) else None
            cropped = raw.get("do_center_crop", "crop_size" in raw)
            crop = _crop(raw.get("crop_size")) if cropped else None
            default_mean, default_std = (
                (HALF, HALF) if siglip else (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
            )
            normalise = raw.get("do_normalize", True)
            return cls(
                resize=resize,
                crop=crop,
                resample=int(raw.get("resample", 2 if siglip else 3)),
                rescale=float(raw.get("rescale_factor", 1 / 255))
                if raw.get("do_rescale", True)
                else None,
                mean=_triple(raw.get("image_mean", default_mean)) if normalise else None,
                std=_triple(raw.get("image_std", default_std)) if normalise else None,
            )
        except (TypeError, ValueError, KeyError) as err:
            raise ConfigError(f"{where}: cannot read the image preprocessing: {err}") from None

    def __call__(self, image: Image.Image, rng: np.random.Generator | None = None) -> torch.Tensor:
        """A float32 ``[3, H, W]`` tensor; with ``rng``, a random crop and jitter (training)."""
        if rng is not None:
            return self._augmented(image, rng)
        if self.resize is not None:
            image = image.resize(self._resized_size(image), resample=self.resample)
        array = np.asarray(image.convert("RGB"))
        if self.crop is not None:
            array = _center_crop(array, *self.crop)
        return torch.from_numpy(np.ascontiguousarray(self._scale(array).transpose(2, 0, 1)))

    def _resized_size(self, image: Image.Image) -> tuple[int, int]:
        """PIL's (width, height) after resizing, as transformers computes it."""
        assert self.resize is not None
        kind, a, b = self.resize
        if kind == "fixed":
            return b, a
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(a * long / short)
        return (a, new_long) if width <= height else (new_long, a)

    def _scale(self, array: np.ndarray) -> np.ndarray:
        out = array.astype(np.float64) * self.rescale if self.rescale else array
        out = out.astype(np.float32)
        if self.mean is not None and self.std is not None:
            out = (out - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return out.astype(np.float32)

    def _augmented(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        # The house augmentation (random crop, jitter) at the processor's output size and stats.
        height, width = self.size
        mean = self.mean or (0.0, 0.0, 0.0)
        std = self.std or (1.0, 1.0, 1.0)
        transform = ImageTransform(height, tuple(mean), tuple(std))  # type: ignore[arg-type]
        out = transform(image, rng)
        if width != height:
            out = torch.nn.functional.interpolate(out[None], (height, width), mode="bilinear")[0]
        return out

    def describe(self) -> dict[str, Any]:
        """Everything that decides the pixels (for fingerprints)."""
        return {
            "resize": self.resize,
            "crop": self.crop,
            "resample": self.resample,
            "rescale": self.rescale,
            "mean": self.mean,
            "std": self.std,
        }


def _resize(size: Any, siglip: bool) -> tuple[str, int, int]:
    if isinstance(size, int):
        return ("fixed", size, size) if siglip else ("shortest", size, 0)
    if not isinstance(size, dict):
        raise ValueError(f"size {size!r}: expected a number or a mapping")
    if "shortest_edge" in size:
        return ("shortest", int(size["shortest_edge"]), 0)
    return ("fixed", int(size["height"]), int(size["width"]))


def _crop(size: Any) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if not isinstance(size, dict):
        raise ValueError(f"crop_size {size!r}: expected a number or a mapping")
    return int(size["height"]), int(size["width"])


def _triple(values: Any) -> tuple[float, ...]:
    values = [values] * 3 if isinstance(values, int | float) else list(values)
    if len(values) != 3:
        raise ValueError(f"expected 3 channel values, got {values!r}")
    return tuple(float(v) for v in values)


def _center_crop(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """transformers' centre crop: offsets rounded down, zero padding when the image is smaller."""
    h, w = array.shape[:2]
    if h < height or w < width:
        padded = np.zeros((max(h, height), max(w, width), array.shape[2]), dtype=array.dtype)
        top, left = -(-(padded.shape[0] - h) // 2), -(-(padded.shape[1] - w) // 2)
        padded[top : top + h, left : left + w] = array
        array, h, w = padded, padded.shape[0], padded.shape[1]
    top, left = (h - height) // 2, (w - width) // 2
    return array[top : top + height, left : left + width]


class HFImageInputs:
    """A tower's image inputs through its ``transform`` (an ``HFImageProcessor``): a mixin."""

    transform: HFImageProcessor

    def preprocessing(self) -> dict[str, Any]:
        return super().preprocessing() | {"transform": self.transform.describe()}  # type: ignore[misc]

    def preprocess(self, raw: Any, rng: np.random.Generator | None = None) -> torch.Tensor:
        return self.transform(load_image(raw), rng)

    def collate(self, items: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(items)
