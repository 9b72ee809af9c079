"""The audio tower: log-mel features, embedding paths, bytes and arrays, the feature cache."""

import numpy as np
import pytest
import soundfile
import torch

from jointspace.config import ModelConfig, TowerConfig
from jointspace.data import AudioError
from jointspace.encoders.audio import LogMel, mel_filterbank, mel_to_hz
from jointspace.models import load
from jointspace.models.build import build_model


def tone(hz, seconds=1.0, rate=16_000, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * hz * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def test_mel_filters_peak_at_their_centres_and_a_tone_lights_its_band():
    bank = mel_filterbank(512, 40, 16_000)
    assert bank.shape == (40, 257) and (bank >= 0).all() and bank.max() <= 1.0
    peaks = bank.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all()  # filters climb in frequency
    logmel = LogMel(16_000, 512, 160, 40)
    spec = logmel(torch.from_numpy(tone(1000.0))[None])[0, 0]
    centres = mel_to_hz(np.linspace(0, 2595 * np.log10(1 + 8000 / 700), 42))[1:-1]
    assert abs(centres[spec.mean(dim=1).argmax()] - 1000) < 120


def audio_model():
    torch.manual_seed(0)
    text = TowerConfig("transformer", dict(width=16, depth=1, heads=2, max_len=8))
    audio = TowerConfig("audio_cnn", dict(seconds=0.5, n_mels=32, widths=[8, 16]))
    config = ModelConfig(embed_dim=8, towers={"text": text, "audio": audio})
    return build_model(config, corpus=["a beep", "a low hum"])


def test_audio_tower_embeds_paths_and_bytes_and_round_trips(tmp_path):
    model = audio_model()
    for i, hz in enumerate((300, 2000)):
        soundfile.write(tmp_path / f"{i}.wav", tone(hz, 0.4), 16_000)
    paths = [tmp_path / "0.wav", tmp_path / "1.wav"]
    embedded = model.encode(paths, "audio")
    assert embedded.shape == (2, 8) and np.allclose(np.linalg.norm(embedded, axis=1), 1)
    as_bytes = model.encode([p.read_bytes() for p in paths], "audio")
    np.testing.assert_allclose(as_bytes, embedded, atol=1e-6)
    louder = tmp_path / "loud.wav"
    soundfile.write(louder, 1.8 * tone(300, 0.4), 16_000)
    assert model.encode([louder], "audio")[0] @ embedded[0] > 0.999  # level hardly matters
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(load(tmp_path / "m").encode(paths, "audio"), embedded)


def test_encode_takes_arrays_with_their_rate(tmp_path):
    model = audio_model()
    soundfile.write(tmp_path / "a.wav", tone(300, 0.4, rate=22_050), 22_050, subtype="FLOAT")
    from_file = model.encode([tmp_path / "a.wav"], "audio")
    from_array = model.encode([(tone(300, 0.4, rate=22_050), 22_050)], "audio")
    np.testing.assert_allclose(from_array, from_file, atol=1e-5)
    with pytest.raises(AudioError, match="audio array: sample rate 7 Hz"):
        model.encode([(tone(300, 0.4), 7)], "audio")


def test_audio_arrays_skip_the_feature_cache_of_a_frozen_tower(tmp_path):
    from jointspace.models.feature_cache import FeatureCache

    model = audio_model()
    tower = model.towers["audio"]
    tower.locked, tower.unlocked = True, [tower.head]
    model.feature_cache = FeatureCache(tmp_path / "cache", progress=False)
    soundfile.write(tmp_path / "a.wav", tone(300, 0.4), 16_000, subtype="FLOAT")
    cached = model.encode([tmp_path / "a.wav"], "audio")
    assert model.feature_cache.misses == 1
    from_array = model.encode([(tone(300, 0.4), 16_000)], "audio")
    np.testing.assert_allclose(from_array, cached, atol=1e-5)
    assert (model.feature_cache.misses, model.feature_cache.hits) == (1, 0)
