"""An MVAE over text and audio: log-mel inputs of real files, absent cells, generation both ways."""

import numpy as np
import pandas as pd
import soundfile
import torch

from jointspace.generative.config import MvaeConfig
from jointspace.runs.mvae import MvaeRun, train_mvae

RATE = 8000


def write_tones(root):
    """Low and high tones named by their captions; a few rows miss their audio or text."""
    (root / "audio").mkdir(parents=True)
    rows = []
    for i in range(24):
        high = i % 2 == 1
        t = np.arange(RATE // 2) / RATE
        wave = 0.5 * np.sin(2 * np.pi * (1800 if high else 300) * t).astype(np.float32)
        soundfile.write(root / "audio" / f"{i}.wav", wave, RATE)
        rows.append({
            "id": str(i),
            "audio": "" if i in (4, 5) else f"audio/{i}.wav",
            "text": "" if i == 6 else ("a high beep" if high else "a low hum"),
            "split": "test" if i >= 20 else "train",
        })  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def test_text_and_audio_train_and_generate_each_other(tmp_path):
    manifest = write_tones(tmp_path / "data")
    config = MvaeConfig.from_dict({
        "data": {"manifest": str(manifest), "val_split": None},
        "modalities": {"audio": {"sample_rate": RATE, "seconds": 0.5, "n_mels": 8, "hop": 256},
                       "text": {}},
        "model": {"latent": 2, "hidden": 16},
        "train": {"epochs": 60, "batch_size": 8, "kl_warmup_steps": 60, "progress": False},
    })  # fmt: skip
    result = train_mvae(config, tmp_path / "run")
    assert result.metrics["rows"] == {"train": 20, "test": 4}
    run = MvaeRun.open(tmp_path / "run")
    assert run.model.specs["audio"].shape == (8, 16)  # n_mels × (0.5 s · 8000 / 256 + 1) frames
    low = run.row("audio", tmp_path / "data" / "audio" / "0.wav")
    assert abs(float(low.mean())) < 1e-5 and abs(float(low.std()) - 1) < 1e-4  # standardised
    words = dict(run.top_words(run.generate_rows({"audio": low}, "text")[0], 10))
    assert words["low"] > words["high"] and words["hum"] > words["beep"]
    high = run.row("audio", tmp_path / "data" / "audio" / "1.wav")
    generated = run.generate({"text": "high beep"}, "audio")
    # The tone generated from "high beep" is nearer the real high tone than the low one.
    assert torch.dist(generated, high) < torch.dist(generated, low)
