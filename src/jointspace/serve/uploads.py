"""Decoding query uploads under the service's limits: sizes read from headers before decoding."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import soundfile
from fastapi import HTTPException
from PIL import Image

from jointspace.data.audio import (
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    UNKNOWN_FRAMES,
    AudioError,
    check_audio,
)
from jointspace.data.image import DECODE_ERRORS as _IMAGE_ERRORS
from jointspace.data.image import ImageError, load_image
from jointspace.serve.query import Upload

_AUDIO_ERRORS = (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError)
_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


@dataclass(frozen=True)
class UploadLimits:
    """What a query file may decode to; larger ones are refused from their header alone."""

    max_pixels: int = 16_000_000
    max_aspect: float = 20.0  # longer side over shorter side
    max_seconds: float = 60.0
    min_rate: int = MIN_SAMPLE_RATE
    max_rate: int = MAX_SAMPLE_RATE
    max_channels: int = 8


def decode_upload(upload: Upload, limits: UploadLimits):
    """The query input the model encodes: a decoded RGB image, or a checked audio file's bytes."""
    if upload.field == "image":
        return decode_image(upload, limits)
    return check_audio_upload(upload, limits)


def decode_image(upload: Upload, limits: UploadLimits) -> Image.Image:
    """The upload decoded to RGB; 413 over the pixel limit, 422 for a sliver or bad bytes."""
    try:
        # Opening reads the header only; Pillow refuses (or warns about) bombs here already.
        image = Image.open(io.BytesIO(upload.data))
    except Image.DecompressionBombError:
        raise HTTPException(
            413, f"{upload.name}: more pixels than the limit of {limits.max_pixels}"
        ) from None
    except _IMAGE_ERRORS:
        raise HTTPException(
            422, f"unreadable {upload.name}: not a PNG, JPEG, GIF, WebP, BMP or TIFF image"
        ) from None
    with image:
        width, height = image.size
        if width * height > limits.max_pixels:
            raise HTTPException(
                413,
                f"{upload.name}: {width}×{height} pixels is over the limit of {limits.max_pixels}",
            )
        if min(width, height) < 1 or max(width, height) > limits.max_aspect * min(width, height):
            raise HTTPException(
                422,
                f"{upload.name}: {width}×{height} pixels; the sides may differ at most "
                f"{limits.max_aspect:g}-fold",
            )
        try:
            return load_image(image, max_pixels=limits.max_pixels)
        except ImageError as err:
            raise HTTPException(422, f"unreadable {upload.name}: {_clean(err.reason)}") from None
        except _IMAGE_ERRORS as err:
            raise HTTPException(
                422, f"unreadable {upload.name}: corrupt image ({_clean(str(err))})"
            ) from None


def check_audio_upload(upload: Upload, limits: UploadLimits) -> bytes:
    """The upload's bytes once its header is within limits and every block decodes."""
    try:
        with soundfile.SoundFile(io.BytesIO(upload.data)) as clip:
            rate, channels, frames = clip.samplerate, clip.channels, clip.frames
    except _AUDIO_ERRORS as err:
        reason = getattr(err, "error_string", None) or _clean(str(err))
        raise HTTPException(
            422, f"unreadable {upload.name}: not a WAV, FLAC or OGG file ({reason})"
        ) from None
    if not limits.min_rate <= rate <= limits.max_rate:
        raise HTTPException(
            422,
            f"{upload.name}: sample rate {rate} Hz is outside "
            f"{limits.min_rate}–{limits.max_rate} Hz",
        )
    if channels > limits.max_channels:
        raise HTTPException(
            422, f"{upload.name}: {channels} channels; at most {limits.max_channels}"
        )
    if UNKNOWN_FRAMES > frames > limits.max_seconds * rate:
        raise HTTPException(
            413,
            f"{upload.name}: {frames / rate:.0f} s long; the limit is {limits.max_seconds:g} s",
        )
    try:
        # Block by block (memory stays one block): truncation, NaN samples and a stream of
        # unknown length past the loaders' limit are refused here, not inside the model.
        check_audio(upload.data)
    except AudioError as err:
        raise HTTPException(422, f"unreadable {upload.name}: {_clean(err.reason)}") from None
    return upload.data


def _clean(message: str) -> str:
    # Library messages sometimes embed a repr such as <_io.BytesIO object at 0x…>.
    return _REPR.sub("the upload", message)
