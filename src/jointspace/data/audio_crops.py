"""Where a fixed-length audio window starts in a longer clip: by position, onset or energy.

At evaluation (no ``rng``) every crop is deterministic; at training a seeded ``rng`` draws a
start near (``start``, ``onset``) or weighted by (``energy``) the content of the clip.
"""

from __future__ import annotations

import numpy as np

from jointspace.config import ConfigError

# center: today's crop (middle at evaluation, uniform at training); windows: the whole clip in
# overlapping windows at evaluation, embedded one by one and mean-pooled by the tower.
CROPS = ("center", "start", "onset", "energy", "windows")
JITTER = 0.1  # training starts of start/onset crops move up to this fraction of the window
ONSET_FRAME_S = 0.01  # onsets are found on 10 ms frames
ONSET_DB = -20.0  # a frame is sounding from this many dB below the clip's loudest frame
PLATEAU = 1e-9  # windows this close to the best tie (float rounding; a burst shorter than one)


def check_crop(crop: str) -> str:
    """``crop`` when it is a known crop name; else a ``ConfigError`` listing them."""
    if crop not in CROPS:
        raise ConfigError(f"audio crop {crop!r} is unknown; known: {', '.join(CROPS)}")
    return crop


def crop_start(
    wave: np.ndarray,
    length: int,
    crop: str,
    rng: np.random.Generator | None = None,
    sample_rate: int = 16_000,
) -> int:
    """The first sample of the ``length``-sample window ``crop`` keeps of a longer ``wave``."""
    excess = len(wave) - length
    if excess <= 0:
        return 0
    if crop == "center" or (crop == "windows" and rng is None):
        return excess // 2 if rng is None else int(rng.integers(0, excess + 1))
    if crop == "energy" or crop == "windows":
        energy = window_energy(wave, length)
        if rng is None:
            return loudest(energy)
        total = energy.sum()
        if total <= 0:  # digital silence: nothing to weight by
            return int(rng.integers(0, excess + 1))
        return int(rng.choice(len(energy), p=energy / total))
    anchor = 0 if crop == "start" else min(onset(wave, sample_rate), excess)
    if rng is None:
        return anchor
    jitter = int(JITTER * length)
    return int(rng.integers(max(0, anchor - jitter), min(excess, anchor + jitter) + 1))


def window_energy(wave: np.ndarray, length: int) -> np.ndarray:
    """The energy (sum of squares) of every ``length``-sample window, by its first sample."""
    cumulative = np.concatenate([[0.0], np.cumsum(np.square(wave, dtype=np.float64))])
    return cumulative[length:] - cumulative[:-length]


def loudest(energy: np.ndarray) -> int:
    """The window with the most energy; of a plateau of equals, its middle (burst centred)."""
    best = energy.max()
    if best <= 0:
        return (len(energy) - 1) // 2  # digital silence: the centre crop
    near = energy >= best * (1 - PLATEAU)
    first = int(near.argmax())
    run = int(np.argmin(near[first:])) if not near[first:].all() else len(near) - first
    return first + (run - 1) // 2


def onset(wave: np.ndarray, sample_rate: int = 16_000) -> int:
    """The first sample of the first 10 ms frame within ``ONSET_DB`` of the loudest frame."""
    frame = max(1, round(ONSET_FRAME_S * sample_rate))
    count = len(wave) // frame
    if count == 0:
        return 0
    frames = wave[: count * frame].astype(np.float64).reshape(count, frame)
    power = np.square(frames).mean(axis=1)
    if power.max() <= 0:
        return 0
    sounding = power >= power.max() * 10 ** (ONSET_DB / 10)
    return int(sounding.argmax()) * frame


def window_starts(n: int, length: int, max_windows: int) -> list[int]:
    """Starts of windows over ``n`` samples overlapping by half, at most ``max_windows`` spread
    evenly from the first to the last, the last ending at the clip's end."""
    if n <= length:
        return [0]
    hop = max(1, length // 2)
    count = min(max_windows, -(-(n - length) // hop) + 1)
    if count == 1:
        return [(n - length) // 2]
    return [round(i * (n - length) / (count - 1)) for i in range(count)]


def energy_fraction(wave: np.ndarray, start: int, length: int) -> float:
    """The share of the clip's energy inside ``[start, start + length)``; 1 for silence."""
    total = float(np.square(wave, dtype=np.float64).sum())
    inside = float(np.square(wave[start : start + length], dtype=np.float64).sum())
    return inside / total if total > 0 else 1.0
