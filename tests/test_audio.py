import numpy as np
import pytest
import soundfile
import torch

from jointspace.config import ModelConfig, TowerConfig
from jointspace.data import AudioError, AudioTransform, load_audio, open_manifest
from jointspace.data.validate import find_problems
from jointspace.encoders.audio import LogMel, mel_filterbank, mel_to_hz
from jointspace.models import load
from jointspace.models.build import build_model


def tone(hz, seconds=1.0, rate=16_000, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * hz * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def test_load_audio_mixes_to_mono_and_resamples(tmp_path):
    stereo = tone(440, seconds=0.5, rate=22_050, channels=2)
    stereo[:, 1] = 0.0
    soundfile.write(tmp_path / "a.wav", stereo, 22_050)
    wave = load_audio(tmp_path / "a.wav", 16_000)
    assert wave.dtype == np.float32 and len(wave) == 8000
    assert abs(np.abs(wave).max() - 0.25) < 0.02  # the mean of a 0.5 tone and silence
    data = (tmp_path / "a.wav").read_bytes()
    np.testing.assert_array_equal(load_audio(data, 16_000), wave)


def test_bad_audio_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    with pytest.raises(AudioError, match=r"bad.wav: unreadable or corrupt audio"):
        load_audio(tmp_path / "bad.wav")
    with pytest.raises(AudioError, match="file not found"):
        load_audio(tmp_path / "missing.wav")
    soundfile.write(tmp_path / "long.wav", tone(100, seconds=3.0), 16_000)
    monkeypatch.setattr("jointspace.data.audio.MAX_SECONDS", 2.0)
    with pytest.raises(AudioError, match="3 s long; the limit is 2 s"):
        load_audio(tmp_path / "long.wav")


def test_transform_pads_crops_and_augments_deterministically():
    transform = AudioTransform(16_000, seconds=1.0)
    short, long = np.ones(4000, np.float32), np.arange(24_000, dtype=np.float32)
    padded = transform(short)
    assert padded.shape == (16_000,) and padded.sum() == 4000 and padded[6000] == 1.0
    assert transform(long)[0] == 4000  # centre crop
    a, b = (transform(long, np.random.default_rng(3)) for _ in range(2))
    assert torch.equal(a, b) and not torch.equal(a, transform(long))


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


def test_validation_flags_corrupt_audio(tmp_path):
    soundfile.write(tmp_path / "ok.wav", tone(440, 0.2), 16_000)
    (tmp_path / "bad.wav").write_bytes(b"\x00" * 64)
    (tmp_path / "m.csv").write_text("id,text,audio\n1,a beep,ok.wav\n2,a hum,bad.wav\n")
    problems = find_problems(open_manifest(tmp_path / "m.csv"))
    assert [(p.row, p.column) for p in problems] == [(2, "audio")]
    assert "unreadable or corrupt audio" in problems[0].message
