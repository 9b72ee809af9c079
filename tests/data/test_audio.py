import numpy as np
import pytest
import soundfile
import torch

from jointspace.data import AudioError, AudioTransform, load_audio, open_manifest
from jointspace.data.validate import find_problems


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


def test_validation_flags_corrupt_audio(tmp_path):
    soundfile.write(tmp_path / "ok.wav", tone(440, 0.2), 16_000)
    (tmp_path / "bad.wav").write_bytes(b"\x00" * 64)
    (tmp_path / "m.csv").write_text("id,text,audio\n1,a beep,ok.wav\n2,a hum,bad.wav\n")
    problems = find_problems(open_manifest(tmp_path / "m.csv"))
    assert [(p.row, p.column) for p in problems] == [(2, "audio")]
    assert "unreadable or corrupt audio" in problems[0].message


def flac_bytes(seconds: float, rate: int = 8_000) -> bytes:
    """Silence as FLAC, written block by block: minutes of audio in a few kB."""
    import io

    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", rate, 1, format="FLAC") as clip:
        block = np.zeros(rate * 10, np.float32)
        for _ in range(int(seconds // 10)):
            clip.write(block)
    return buffer.getvalue()


def flac_total_samples(data: bytes, total: int) -> bytes:
    """``data`` with the STREAMINFO total-samples field set to ``total`` (0: unknown length)."""
    patched = bytearray(data)
    fields = int.from_bytes(patched[18:26], "big")
    fields = (fields & ~((1 << 36) - 1)) | total
    patched[18:26] = fields.to_bytes(8, "big")
    return bytes(patched)


def refused_fast(source, pattern, fn=None):
    import time

    start = time.perf_counter()
    with pytest.raises(AudioError, match=pattern):
        (fn or load_audio)(source)
    assert time.perf_counter() - start < 1.0


def test_a_flac_bomb_is_refused_from_its_header(tmp_path):
    data = flac_bytes(660)  # 11 minutes of silence
    assert len(data) < 50_000
    (tmp_path / "bomb.flac").write_bytes(data)
    for fn in (load_audio, check_audio_of, AudioTransform(16_000, 1.0).load):
        refused_fast(tmp_path / "bomb.flac", r"bomb.flac: 660 s long; the limit is 600 s", fn)
    refused_fast(data, r"^uploaded audio: 660 s long; the limit is 600 s")
    claims = flac_total_samples(flac_bytes(10), (1 << 36) - 1)  # a header claiming 99 days
    refused_fast(claims, r"s long; the limit is 600 s")


def test_a_flac_of_unknown_length_stops_reading_at_the_limit(monkeypatch):
    monkeypatch.setattr("jointspace.data.audio.MAX_SECONDS", 5.0)
    unknown = flac_total_samples(flac_bytes(20), 0)
    refused_fast(unknown, r"^uploaded audio: longer than the limit of 5 s")
    refused_fast(unknown, r"longer than the limit of 5 s", check_audio_of)
    monkeypatch.setattr("jointspace.data.audio.MAX_SECONDS", 30.0)
    assert len(load_audio(unknown, 8_000)) == 160_000  # within the limit: read to the end


def check_audio_of(source):
    from jointspace.data.audio import check_audio

    check_audio(source)


@pytest.mark.parametrize("rate", [1, 3_999, 192_001, 999_999_937, 2_000_000_000])
def test_odd_sample_rates_are_refused_before_resampling(tmp_path, rate):
    soundfile.write(tmp_path / "odd.wav", np.zeros(100, np.float32), rate)
    pattern = rf"odd.wav: sample rate {rate} Hz is outside 4000–192000 Hz"
    refused_fast(tmp_path / "odd.wav", pattern)
    refused_fast(tmp_path / "odd.wav", pattern, check_audio_of)


def test_empty_nan_and_bad_arrays_are_clear_errors(tmp_path):
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16_000)
    refused_fast(tmp_path / "empty.wav", r"empty.wav: no samples")
    wave = tone(440, 0.1)
    wave[10] = np.nan
    soundfile.write(tmp_path / "nan.wav", wave, 16_000, subtype="FLOAT")
    refused_fast(tmp_path / "nan.wav", r"nan.wav: holds NaN or infinite samples")
    refused_fast((wave, 16_000), r"^audio array: holds NaN")
    refused_fast((tone(440, 0.1), 16_000.5), r"sample rate must be an integer, got float")
    refused_fast((np.zeros((2, 2, 2), np.float32), 16_000), r"expected a 1-D or frames×channels")
    refused_fast((tone(440, 0.1), 100), r"sample rate 100 Hz is outside")
    refused_fast(12, r"^audio input: expected a path, bytes or \(array, sample rate\), not int")


@pytest.mark.parametrize("rate", [16_000, 8_000, 22_050, 44_100, 48_000, 44_099])
def test_the_tower_decodes_only_its_window_with_the_same_samples(tmp_path, rate):
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(rate * 7)).astype(np.float32)
    soundfile.write(tmp_path / "long.wav", wave, rate, subtype="FLOAT")
    transform = AudioTransform(16_000, seconds=0.5)
    full = load_audio(tmp_path / "long.wav", 16_000)
    np.testing.assert_allclose(transform.load(tmp_path / "long.wav"), transform(full), atol=1e-6)
    for seed in (1, 2):
        window = transform.load(tmp_path / "long.wav", np.random.default_rng(seed))
        expected = transform(full, np.random.default_rng(seed))
        np.testing.assert_allclose(window, expected, atol=1e-6)


def test_the_window_read_keeps_memory_to_the_window(tmp_path):
    import tracemalloc

    soundfile.write(tmp_path / "min.flac", np.zeros(16_000 * 60, np.float32), 16_000)
    transform = AudioTransform(16_000, seconds=1.0)
    tracemalloc.start()
    transform.load(tmp_path / "min.flac")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000  # the whole minute would be 3.84 MB of float32
