import numpy as np
import pytest
import torch

from jointspace.config import ConfigError
from jointspace.data import AudioTransform
from jointspace.data.audio_crops import (
    CROPS,
    JITTER,
    crop_start,
    energy_fraction,
    onset,
    window_starts,
)

RATE = 16_000


def burst_clip(seconds=3.0, at=1.3, length=1.0, seed=0):
    """Silence with a noise burst of ``length`` s starting at ``at`` s (every sample non-zero)."""
    wave = np.zeros(round(seconds * RATE), np.float32)
    first = round(at * RATE)
    noise = np.random.default_rng(seed).uniform(0.1, 0.5, round(length * RATE))
    wave[first : first + len(noise)] = noise * np.sign(np.sin(np.arange(len(noise))) + 0.5)
    return wave


def test_energy_crop_keeps_the_loud_window_exactly():
    wave = burst_clip(at=1.3, length=1.0)
    transform = AudioTransform(RATE, seconds=1.0, crop="energy")
    assert crop_start(wave, RATE, "energy") == 20_800
    assert torch.equal(transform(wave), torch.from_numpy(wave[20_800:36_800]))
    assert energy_fraction(wave, 20_800, RATE) == 1.0
    # A burst shorter than the window: every window holding it all ties; the middle centres it.
    short = burst_clip(at=1.3, length=0.5)
    assert crop_start(short, RATE, "energy") == 20_800 - 4_000
    # A sound at 0 s: the centre crop, [16000, 32000), misses it; the energy crop keeps it all.
    first = burst_clip(at=0.0, length=0.5)
    assert crop_start(first, RATE, "center") == 16_000
    assert energy_fraction(first, 16_000, RATE) == 0.0
    assert crop_start(first, RATE, "energy") == 0 and energy_fraction(first, 0, RATE) == 1.0


def test_onset_crop_starts_at_the_onset():
    wave = np.random.default_rng(1).normal(0, 1e-4, 4 * RATE).astype(np.float32)  # -80 dB hiss
    wave[11_680:] += 0.5 * np.cos(2 * np.pi * 440 * np.arange(4 * RATE - 11_680) / RATE)
    assert onset(wave, RATE) == 11_680
    assert crop_start(wave, RATE, "onset") == 11_680
    out = AudioTransform(RATE, seconds=1.0, crop="onset")(wave)
    assert torch.equal(out, torch.from_numpy(wave[11_680:27_680]))
    # A sound from the first sample that fades (a recorded effect) starts at 0, as `start` does.
    fading = (np.exp(-np.arange(3 * RATE) / RATE) * np.cos(np.arange(3 * RATE))).astype(np.float32)
    assert crop_start(fading, RATE, "onset") == crop_start(fading, RATE, "start") == 0
    # An onset past the last full window keeps the last window.
    late = np.zeros(2 * RATE, np.float32)
    late[-800:] = 1.0
    assert crop_start(late, RATE, "onset") == RATE


@pytest.mark.parametrize("crop", ["start", "onset", "energy", "windows"])
def test_training_crops_are_seeded_and_stay_on_the_content(crop):
    wave = burst_clip(seconds=4.0, at=1.3, length=1.0)
    transform = AudioTransform(RATE, seconds=1.0, crop=crop)
    a, b = (transform(wave, np.random.default_rng(7)) for _ in range(2))
    assert a.shape == (RATE,) and torch.equal(a, b)
    starts = [crop_start(wave, RATE, crop, np.random.default_rng(s)) for s in range(20)]
    assert len(set(starts)) > 5  # different seeds, different crops
    anchor = {"start": 0, "onset": 20_800}.get(crop)
    if anchor is None:  # energy-weighted: every crop holds part of the burst
        assert min(energy_fraction(wave, s, RATE) for s in starts) > 0
    else:
        assert all(abs(s - anchor) <= JITTER * RATE for s in starts)


@pytest.mark.parametrize("crop", CROPS)
def test_short_clips_are_padded_as_before(crop):
    short = np.arange(1, 4001, dtype=np.float32)
    centre, transform = AudioTransform(RATE, 1.0), AudioTransform(RATE, 1.0, crop=crop)
    evaluated = transform(short)
    expected = centre(short)
    assert evaluated.shape == ((1, RATE) if crop == "windows" else (RATE,))
    assert torch.equal(evaluated.reshape(-1), expected) and expected[6000] == 1.0
    trained = transform(short, np.random.default_rng(3))
    assert torch.equal(trained, centre(short, np.random.default_rng(3)))


def test_center_crop_is_todays_crop_bit_for_bit():
    wave = np.random.default_rng(2).normal(0, 0.3, 37_123).astype(np.float32)
    transform = AudioTransform(RATE, seconds=1.0)
    assert transform.crop == "center"
    excess = len(wave) - RATE
    assert torch.equal(transform(wave), torch.from_numpy(wave[excess // 2 :][:RATE]))
    for seed in range(5):
        rng = np.random.default_rng(seed)
        start = int(rng.integers(0, excess + 1))
        gain = np.float32(10 ** (rng.uniform(-6, 6) / 20))
        expected = torch.from_numpy(np.ascontiguousarray(wave[start : start + RATE] * gain))
        assert torch.equal(transform(wave, np.random.default_rng(seed)), expected)


def test_windows_cover_the_clip_with_half_overlap():
    assert window_starts(RATE, RATE, 8) == [0]
    assert window_starts(2 * RATE, RATE, 8) == [0, 8_000, 16_000]
    assert window_starts(2 * RATE + 100, RATE, 8) == [0, 5_367, 10_733, 16_100]
    assert window_starts(100 * RATE, RATE, 4) == [0, 528_000, 1_056_000, 1_584_000]
    wave = np.arange(2 * RATE, dtype=np.float32)
    windows = AudioTransform(RATE, 1.0, crop="windows")(wave)
    assert windows.shape == (3, RATE) and windows[1, 0] == 8_000 and windows[2, -1] == 2 * RATE - 1


def test_an_unknown_crop_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"audio crop 'middle' is unknown; known: center, start"):
        AudioTransform(RATE, 1.0, crop="middle")
