"""Audio loading and preprocessing with soundfile and SciPy (no torchaudio)."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile
import torch
from scipy.signal import resample_poly

from jointspace.errors import JointspaceError

# Refuse clips longer than this before decoding them (a 10-minute WAV is 19 MB at 16 kHz).
MAX_SECONDS = float(os.environ.get("JOINTSPACE_MAX_AUDIO_SECONDS", 600))


class AudioError(JointspaceError, ValueError):
    """An audio file that cannot be read; the message names the file and the reason."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.reason = reason


def load_audio(source: str | Path | bytes, sample_rate: int = 16_000) -> np.ndarray:
    """Mono float32 samples at ``sample_rate`` from a WAV/FLAC/OGG file or its bytes."""
    with _open(source) as (clip, name):
        samples, rate = clip.read(dtype="float32", always_2d=True), clip.samplerate
    if samples.size == 0:
        raise AudioError(name, "no samples")
    wave = samples.mean(axis=1)
    if rate != sample_rate:
        divisor = gcd(rate, sample_rate)
        wave = resample_poly(wave, sample_rate // divisor, rate // divisor).astype(np.float32)
    return wave


def check_audio(source: str | Path | bytes) -> None:
    """Raise ``AudioError`` unless the header reads and the clip has samples within the limit."""
    with _open(source) as (clip, name):
        if clip.frames == 0:
            raise AudioError(name, "no samples")


@contextlib.contextmanager
def _open(source: str | Path | bytes) -> Iterator[tuple[soundfile.SoundFile, str]]:
    name = "uploaded audio" if isinstance(source, bytes) else str(source)
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise AudioError(name, "file not found")
    try:
        with soundfile.SoundFile(handle) as clip:
            if clip.frames > MAX_SECONDS * clip.samplerate:
                seconds = clip.frames / clip.samplerate
                raise AudioError(name, f"{seconds:.0f} s long; the limit is {MAX_SECONDS:.0f} s")
            yield clip, name
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(name, f"unreadable or corrupt audio ({err})") from err


@dataclass
class AudioTransform:
    """Fixed-length clips: centre crop or zero-pad; random crop and gain given ``rng``."""

    sample_rate: int = 16_000
    seconds: float = 2.0

    @property
    def length(self) -> int:
        return round(self.sample_rate * self.seconds)

    def __call__(self, wave: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        """A float32 ``[length]`` tensor."""
        excess = len(wave) - self.length
        if excess > 0:
            start = excess // 2 if rng is None else int(rng.integers(0, excess + 1))
            wave = wave[start : start + self.length]
        elif excess < 0:
            before = -excess // 2 if rng is None else int(rng.integers(0, -excess + 1))
            wave = np.pad(wave, (before, -excess - before))
        if rng is not None:
            wave = wave * np.float32(10 ** (rng.uniform(-6, 6) / 20))  # ±6 dB
        return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
