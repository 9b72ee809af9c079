"""Audio loading and preprocessing with soundfile and SciPy (no torchaudio).

Every clip's header (frames, sample rate, channels) is checked against the limits below before
any sample is decoded or resampled; samples are read in blocks and mixed to mono as they come.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
from scipy.signal import resample_poly

from jointspace.data.audio_crops import check_crop, crop_start, window_starts
from jointspace.errors import JointspaceError

# Refuse clips longer than this before decoding them (a 10-minute WAV is 19 MB at 16 kHz).
MAX_SECONDS = float(os.environ.get("JOINTSPACE_MAX_AUDIO_SECONDS", 600))
# Sample rates outside this range are refused: resampling an odd rate can need GiBs of filter.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4_000, 192_000
MAX_CHANNELS = 32
BLOCK_FRAMES = 1 << 16  # decoded per read: memory is a block × channels, not the whole file
UNKNOWN_FRAMES = 1 << 62  # libsndfile reports SF_COUNT_MAX when a header leaves length open

AudioSource = str | Path | bytes | tuple[np.ndarray, int]


class AudioError(JointspaceError, ValueError):
    """An audio file that cannot be read; the message names the file and the reason."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.reason = reason


def load_audio(source: AudioSource, sample_rate: int = 16_000) -> np.ndarray:
    """Mono float32 samples at ``sample_rate``: a WAV/FLAC/OGG path, its bytes or (array, rate)."""
    if isinstance(source, tuple):
        wave, rate = _from_array(source)
    else:
        with _open(source) as (clip, name):
            wave, rate = _read(clip, name, 0, None), clip.samplerate
    return _resample(wave, rate, sample_rate)


def check_audio(source: str | Path | bytes) -> None:
    """Raise ``AudioError`` unless the clip decodes within the limits, with finite samples."""
    with _open(source) as (clip, name):
        _read(clip, name, 0, None, keep=False)


def _resample(wave: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    if rate == sample_rate:
        return wave
    divisor = gcd(rate, sample_rate)
    return resample_poly(wave, sample_rate // divisor, rate // divisor).astype(np.float32)


@contextlib.contextmanager
def _open(source: str | Path | bytes) -> Iterator[tuple[soundfile.SoundFile, str]]:
    name = "uploaded audio" if isinstance(source, bytes | bytearray) else "audio input"
    if isinstance(source, bytes | bytearray):
        handle: Any = io.BytesIO(bytes(source))
    elif isinstance(source, str | os.PathLike):
        name = str(source)
        if not Path(source).is_file():
            raise AudioError(name, "file not found")
        handle = source
    else:
        kind = type(source).__name__
        raise AudioError(name, f"expected a path, bytes or (array, sample rate), not {kind}")
    try:
        with soundfile.SoundFile(handle) as clip:
            check_header(clip.frames, clip.samplerate, clip.channels, name)
            yield clip, name
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as err:
        # libsndfile's own words, without the "Error opening <_io.BytesIO …>" wrapper.
        reason = getattr(err, "error_string", None) or str(err)
        raise AudioError(name, f"unreadable or corrupt audio ({reason.rstrip('.')})") from err


def check_header(frames: int, rate: int, channels: int, name: str) -> None:
    """Raise ``AudioError`` for a sample rate, channel count or duration over the limits."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            name,
            f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}–{MAX_SAMPLE_RATE} Hz",
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(name, f"{channels} channels; the limit is {MAX_CHANNELS}")
    if frames == 0:
        raise AudioError(name, "no samples")
    if UNKNOWN_FRAMES > frames > MAX_SECONDS * rate:
        raise AudioError(name, f"{frames / rate:.0f} s long; the limit is {MAX_SECONDS:.0f} s")


def _read(
    clip: soundfile.SoundFile, name: str, start: int, stop: int | None, keep: bool = True
) -> np.ndarray:
    """Frames ``[start, stop)`` mixed to mono, block by block, refused past ``MAX_SECONDS``.

    With ``keep`` False the blocks are only checked, so memory stays one block.
    """
    limit = int(MAX_SECONDS * clip.samplerate)
    stop = limit + 1 if stop is None else stop
    if start:
        clip.seek(start)
    blocks, count = [], 0
    while count < stop - start:
        block, ended = _read_block(clip, min(BLOCK_FRAMES, stop - start - count))
        if not len(block):
            break
        mono = block.mean(axis=1, dtype=np.float32)
        if not np.isfinite(mono).all():
            raise AudioError(name, "holds NaN or infinite samples")
        blocks.append(mono if keep else mono[:0])
        count += len(block)
        if ended:
            break
    if start + count > limit:
        raise AudioError(name, f"longer than the limit of {MAX_SECONDS:.0f} s")
    if not count:
        raise AudioError(name, "no samples")
    return np.concatenate(blocks)


def _read_block(clip: soundfile.SoundFile, frames: int) -> tuple[np.ndarray, bool]:
    """Up to ``frames`` frames, and whether the stream ended."""
    if clip.frames < UNKNOWN_FRAMES:
        return clip.read(frames, "float32", always_2d=True), False
    # Of unknown length (a streamed FLAC), the read that reaches the end decodes its frames and
    # then fails to seek; PCM decodes never hold NaN, so the NaN fill marks what was decoded.
    out = np.full((frames, clip.channels), np.nan, np.float32)
    try:
        return clip.read(out=out), False
    except soundfile.LibsndfileError:
        unfilled = np.isnan(out[:, 0])
        return out[: int(unfilled.argmax()) if unfilled.any() else frames], True


def _from_array(source: tuple[Any, ...]) -> tuple[np.ndarray, int]:
    name = "audio array"
    if len(source) != 2 or not isinstance(source[0], np.ndarray):
        raise AudioError(name, "expected (samples array, sample rate)")
    array, rate = source
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer):
        raise AudioError(name, f"sample rate must be an integer, got {type(rate).__name__}")
    if array.ndim not in (1, 2) or array.dtype.kind not in "fiu":
        raise AudioError(name, f"expected a 1-D or frames×channels array, got {array.shape}")
    channels = 1 if array.ndim == 1 else array.shape[1]
    check_header(array.shape[0], int(rate), channels, name)
    wave = array.astype(np.float32) if array.ndim == 1 else array.mean(axis=1, dtype=np.float32)
    if not np.isfinite(wave).all():
        raise AudioError(name, "holds NaN or infinite samples")
    return wave, int(rate)


@dataclass
class AudioTransform:
    """Fixed-length clips: cropped (``crop``, see ``audio_crops``) or zero-padded; random crop and
    gain given ``rng``; ``crop="windows"`` without ``rng`` gives ``[windows, length]``."""

    sample_rate: int = 16_000
    seconds: float = 2.0
    crop: str = "center"
    max_windows: int = 8

    def __post_init__(self) -> None:
        check_crop(self.crop)

    @property
    def length(self) -> int:
        return round(self.sample_rate * self.seconds)

    def __call__(self, wave: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        """A float32 ``[length]`` tensor (``[windows, length]`` for evaluation by windows)."""
        if self.crop == "windows" and rng is None and len(wave) > self.length:
            starts = window_starts(len(wave), self.length, self.max_windows)
            return self._gain(np.stack([wave[s : s + self.length] for s in starts]), None)
        excess = len(wave) - self.length
        if excess > 0:
            if self.crop == "center":
                start = self._start(excess, rng)
            else:
                start = crop_start(wave, self.length, self.crop, rng, self.sample_rate)
            wave = wave[start : start + self.length]
        elif excess < 0:
            before = -excess // 2 if rng is None else int(rng.integers(0, -excess + 1))
            wave = np.pad(wave, (before, -excess - before))
        wave = self._gain(wave, rng)
        return wave[None] if self.crop == "windows" and rng is None else wave

    def load(self, source: AudioSource, rng: np.random.Generator | None = None) -> torch.Tensor:
        """``self(load_audio(source))``; a centre crop decodes only the frames it keeps."""
        if isinstance(source, tuple):
            return self(load_audio(source, self.sample_rate), rng)
        with _open(source) as (clip, name):
            rate, frames = clip.samplerate, clip.frames
            up, down = _ratio(rate, self.sample_rate)
            resampled = (frames * up + down - 1) // down
            # Content crops look at the whole clip (at most MAX_SECONDS) to place the window.
            whole = self.crop != "center" or frames >= UNKNOWN_FRAMES
            if whole or resampled <= self.length:
                wave = _resample(_read(clip, name, 0, None), rate, self.sample_rate)
                return self(wave, rng)
            start = self._start(resampled - self.length, rng)
            # Whole filter spans either side; a first frame on the resampling grid (a multiple
            # of down) makes the window's samples the very ones the whole clip would give.
            margin = 10 * max(up, down) // up + 2
            first = max(0, start * down // up - margin)
            first -= first % down
            last = min(frames, -(-(start + self.length) * down // up) + margin)
            wave = _resample(_read(clip, name, first, last), rate, self.sample_rate)
        offset = start - first * up // down
        return self._gain(wave[offset : offset + self.length], rng)

    @staticmethod
    def _start(excess: int, rng: np.random.Generator | None) -> int:
        return excess // 2 if rng is None else int(rng.integers(0, excess + 1))

    @staticmethod
    def _gain(wave: np.ndarray, rng: np.random.Generator | None) -> torch.Tensor:
        if rng is not None:
            wave = wave * np.float32(10 ** (rng.uniform(-6, 6) / 20))  # ±6 dB
        return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))


def _ratio(rate: int, sample_rate: int) -> tuple[int, int]:
    divisor = gcd(rate, sample_rate)
    return sample_rate // divisor, rate // divisor
