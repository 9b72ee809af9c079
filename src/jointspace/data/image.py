"""Image loading and preprocessing with Pillow and NumPy (no torchvision)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from jointspace.errors import JointspaceError

# Limits checked on the header, before any pixel is decoded; the environment can raise them.
# MAX_PIXELS: decompression bombs (a 388 kB PNG can claim 20,000×20,000 pixels).
MAX_PIXELS = int(os.environ.get("JOINTSPACE_MAX_IMAGE_PIXELS", 50_000_000))
# MAX_ASPECT: slivers (a 1×20,000 PNG resized on its short side becomes 32×640,000 pixels).
MAX_ASPECT = float(os.environ.get("JOINTSPACE_MAX_IMAGE_ASPECT", 50))
# What Pillow's format plugins raise on malformed files; only these become ImageError.
DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    ZeroDivisionError,
    struct.error,
    zlib.error,
)
_TRUNCATION_LOCK = threading.Lock()

ImageSource = str | Path | bytes | Image.Image | np.ndarray


class ImageError(JointspaceError, ValueError):
    """An image that cannot be read; the message names the file and the reason."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.reason = reason


def load_image(
    source: ImageSource, max_pixels: int | None = None, *, name: str | None = None
) -> Image.Image:
    """A fully decoded RGB image: EXIF orientation applied, transparency composited on white.

    ``source`` is a path, encoded bytes, a PIL image or an H×W[×3|4] array (uint8, or float in
    [0, 1]). Sizes over ``max_pixels`` (default ``MAX_PIXELS``) or ``MAX_ASPECT`` are refused.
    """
    name = name or _name(source)
    limit = max_pixels or MAX_PIXELS
    if isinstance(source, np.ndarray):
        return _from_array(source, name, limit)
    if isinstance(source, bytes | bytearray | memoryview):
        source = io.BytesIO(bytes(source))
    elif not isinstance(source, Image.Image | str | os.PathLike):
        raise ImageError(
            name, f"expected a path, bytes, PIL image or array, not {type(source).__name__}"
        )
    opened = None
    try:
        image = source if isinstance(source, Image.Image) else Image.open(source)
        opened = None if image is source else image
        check_size(image.width, image.height, name, limit)
        with _strict_decoding():
            image.load()
        return _to_rgb(ImageOps.exif_transpose(image))
    except FileNotFoundError as err:
        raise ImageError(name, "file not found") from err
    except IsADirectoryError as err:
        raise ImageError(name, "is a folder, not an image file") from err
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        pillow = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        reason = f"{_bomb_pixels(err)}exceeds Pillow's decompression-bomb limit of {pillow}"
        raise ImageError(name, reason) from err
    except DECODE_ERRORS as err:
        raise ImageError(name, f"unreadable or corrupt image ({_reason(err)})") from err
    finally:
        # _to_rgb always returns a copy, so the file can go; multi-frame files stay open otherwise.
        if opened is not None:
            opened.close()


def check_size(width: int, height: int, name: str, max_pixels: int | None = None) -> None:
    """Raise ``ImageError`` for a size over the pixel limit or a sliver over ``MAX_ASPECT``."""
    limit = max_pixels or MAX_PIXELS
    if width < 1 or height < 1:
        raise ImageError(name, f"{width}×{height} pixels: the image is empty")
    if width * height > limit:
        raise ImageError(
            name,
            f"{width}×{height} pixels exceeds the limit of "
            f"{limit} (set JOINTSPACE_MAX_IMAGE_PIXELS to allow more)",
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageError(
            name,
            f"{width}×{height} pixels: aspect ratio over the limit of {MAX_ASPECT:g}:1 "
            "(set JOINTSPACE_MAX_IMAGE_ASPECT to allow more)",
        )


def _name(source: object) -> str:
    if isinstance(source, str | os.PathLike):
        return str(source)
    if isinstance(source, Image.Image):
        return getattr(source, "filename", None) or "image"
    if isinstance(source, np.ndarray):
        return "image array"
    return "uploaded image"


def _reason(err: BaseException) -> str:
    # Pillow's messages may quote reprs of file objects; keep the words, drop the objects.
    text = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the data", str(err)).strip()
    return text or type(err).__name__


def _bomb_pixels(err: BaseException) -> str:
    found = re.search(r"\((\d+) pixels\)", str(err))
    return f"{found.group(1)} pixels " if found else ""


def _from_array(array: np.ndarray, name: str, limit: int) -> Image.Image:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ImageError(name, f"expected an H×W, H×W×3 or H×W×4 array, got shape {array.shape}")
    check_size(array.shape[1], array.shape[0], name, limit)
    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ImageError(name, "the array holds NaN or infinite values")
        if array.min() < 0 or array.max() > 1:
            raise ImageError(name, "float pixel values must lie in [0, 1]")
        pixels = np.rint(array * 255).astype(np.uint8)
    else:
        raise ImageError(name, f"pixel type {array.dtype} (use uint8, or float in [0, 1])")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    return _to_rgb(Image.fromarray(np.ascontiguousarray(pixels)))


@contextlib.contextmanager
def _strict_decoding() -> Iterator[None]:
    # A truncated file must fail, even if other code enabled Pillow's lenient global switch.
    if not ImageFile.LOAD_TRUNCATED_IMAGES:
        yield
        return
    with _TRUNCATION_LOCK:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = True


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = Image.fromarray(_wide_to_uint8(np.asarray(image), image.mode))
    return image.convert("RGB")


def _wide_to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    # Pillow's own conversion clips at 255, turning 16-bit and float images white.
    array = array.astype(np.float64)
    low, high = float(array.min()), float(array.max())
    if mode.startswith("I;16") or (mode == "I" and low >= 0 and 255 < high <= 65535):
        array = array / 257
    elif mode == "F" and low >= 0 and high <= 1:
        array = array * 255
    elif low < 0 or high > 255:
        array = (array - low) / max(high - low, 1e-12) * 255
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


@dataclass
class ImageTransform:
    """Resize the shorter side, center-crop to a square, normalise; random crop/jitter with rng."""

    size: int = 32
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __call__(self, image: Image.Image, rng: np.random.Generator | None = None) -> torch.Tensor:
        """A normalised float32 ``[3, size, size]`` tensor; random crop and jitter given ``rng``."""
        if image.mode != "RGB":
            image = _to_rgb(image)
        image = self._center(image) if rng is None else self._random_crop(image, rng)
        array = np.asarray(image, dtype=np.float32) / 255.0
        if rng is not None:
            array = _jitter(array, rng)
        array = (array - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))

    def _center(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        scale = self.size / min(w, h)
        new = (max(self.size, round(w * scale)), max(self.size, round(h * scale)))
        image = image.resize(new, Image.Resampling.BICUBIC)
        left, top = (new[0] - self.size) // 2, (new[1] - self.size) // 2
        return image.crop((left, top, left + self.size, top + self.size))

    def _random_crop(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = image.size
        area = w * h * rng.uniform(0.8, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw = int(min(w, max(1, round(np.sqrt(area * aspect)))))
        ch = int(min(h, max(1, round(np.sqrt(area / aspect)))))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        box = (left, top, left + cw, top + ch)
        return image.resize((self.size, self.size), Image.Resampling.BICUBIC, box=box)


def _jitter(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    brightness, contrast = rng.uniform(0.9, 1.1, size=2)
    array = array * brightness
    mean = array.mean()
    return np.clip((array - mean) * contrast + mean, 0.0, 1.0)
