"""The audio tower's ``crop`` param: recorded only when not the default; windows mean-pooled."""

import numpy as np
import soundfile
import torch

from jointspace.config import ModelConfig, TowerConfig
from jointspace.encoders.audio import AudioCNN
from jointspace.models import load
from jointspace.models.build import build_model


def clip(seconds, seed):
    return np.random.default_rng(seed).normal(0, 0.2, round(16_000 * seconds)).astype(np.float32)


def tower(crop):
    torch.manual_seed(0)
    return AudioCNN(8, seconds=0.5, n_mels=32, widths=(8, 16), crop=crop).eval()


def test_default_params_are_unchanged_and_a_crop_is_recorded():
    assert "crop" not in tower("center").params
    assert tower("energy").params["crop"] == "energy"
    windows = tower("center").params | {"crop": "windows", "max_windows": 8}
    assert tower("windows").params == windows
    assert tower("center").fingerprint() != tower("energy").fingerprint()


def test_windows_embed_the_mean_of_each_clips_own_windows():
    windowed, plain = tower("windows"), tower("center")
    long, short = clip(1.1, 0), clip(0.4, 1)
    items = [windowed.preprocess((long, 16_000)), windowed.preprocess((short, 16_000))]
    assert [tuple(x.shape) for x in items] == [(4, 8000), (1, 8000)]
    batch = windowed.collate(items)
    assert batch.shape == (2, 4, 8000) and not batch[1, 1:].any()  # zero windows pad
    with torch.no_grad():
        pooled = windowed.pooled(batch)
        expected_long = plain.pooled(items[0]).mean(0)
        expected_short = plain.pooled(items[1])[0]
        states, mask = windowed.tokens(batch)
    torch.testing.assert_close(pooled[0], expected_long, atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled[1], expected_short, atol=1e-5, rtol=0)
    per_window = states.shape[1] // 4
    assert mask[0].all() and mask[1].sum() == per_window
    # Training (an rng) crops one window, as every other crop does.
    assert windowed.preprocess((long, 16_000), np.random.default_rng(0)).shape == (8000,)


def test_a_model_with_a_crop_encodes_files_and_round_trips(tmp_path):
    torch.manual_seed(0)
    text = TowerConfig("transformer", dict(width=16, depth=1, heads=2, max_len=8))
    for crop in ("energy", "windows"):
        params = dict(seconds=0.5, n_mels=32, widths=[8, 16], crop=crop)
        config = ModelConfig(
            embed_dim=8, towers={"text": text, "audio": TowerConfig("audio_cnn", params)}
        )
        model = build_model(config, corpus=["a beep"])
        paths = []
        for i, seconds in enumerate((1.3, 0.3)):
            paths.append(tmp_path / f"{crop}{i}.wav")
            soundfile.write(paths[-1], clip(seconds, i), 16_000)
        embedded = model.encode(paths, "audio")
        assert embedded.shape == (2, 8) and np.allclose(np.linalg.norm(embedded, axis=1), 1)
        model.save(tmp_path / crop)
        reloaded = load(tmp_path / crop)
        assert reloaded.towers["audio"].transform.crop == crop
        np.testing.assert_array_equal(reloaded.encode(paths, "audio"), embedded)
