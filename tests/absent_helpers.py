"""A tiny three-modality manifest (text, image, audio) with absent cells, for the missing-modality
tests: four classes, a colour image, a caption and a tone per row."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

from jointspace.config import ExperimentConfig, ObjectiveConfig, TowerConfig

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (230, 220, 20),
}
TONES = {"red": 220.0, "green": 440.0, "blue": 880.0, "yellow": 1760.0}
RATE = 8000


def write_three_modality_manifest(
    folder: Path,
    rows: int = 48,
    *,
    audio_every: int = 3,
    audio_rows: Collection[int] | None = None,
    lone_image_rows: tuple[int, ...] = (1,),
) -> Path:
    """``folder/m.csv``: every row has an image; rows ``i % audio_every == 0`` (or all but
    ``audio_rows``) lack audio, and ``lone_image_rows`` hold their image alone."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "wav").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    names = list(COLOURS)
    lines = ["id,text,image,audio,label,split"]
    for i in range(rows):
        name = names[i % len(names)]
        pixels = np.clip(np.array(COLOURS[name]) + rng.normal(0, 20, (16, 16, 3)), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / "img" / f"{i}.png")
        text = f"a {name} {['thing', 'patch', 'square'][i % 3]}"
        audio = ""
        if (i % audio_every) if audio_rows is None else (i in audio_rows):
            t = np.arange(int(0.25 * RATE)) / RATE
            wave = 0.5 * np.sin(2 * np.pi * TONES[name] * t) + rng.normal(0, 0.02, t.shape)
            soundfile.write(folder / "wav" / f"{i}.wav", wave.astype(np.float32), RATE)
            audio = f"wav/{i}.wav"
        if i in lone_image_rows:
            text, audio = "", ""
        lines.append(f"{i},{text},img/{i}.png,{audio},{name},train")
    path = folder / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def three_modality_config(**train) -> ExperimentConfig:
    """Text, image and audio towers small enough to train on the manifest above in seconds."""
    config = ExperimentConfig()
    config.data.modalities = ["text", "image", "audio"]
    config.data.val_split = config.data.test_split = None
    config.model.embed_dim = 16
    text = dict(width=16, depth=1, heads=2, max_len=8, vocab_size=100, dropout=0.0)
    audio = dict(sample_rate=8000, seconds=0.25, n_mels=16, n_fft=256, hop=80, widths=[8, 16])
    config.model.towers = {
        "text": TowerConfig("transformer", text),
        "image": TowerConfig("cnn", dict(image_size=16, widths=[8, 16])),
        "audio": TowerConfig("audio_cnn", audio),
    }
    config.objectives = [ObjectiveConfig("clip")]
    config.train.batch_size, config.train.epochs, config.train.lr = 16, 12, 3e-3
    config.train.warmup_steps, config.train.progress, config.train.log_every = 2, False, 1
    config.train.device, config.train.feature_cache = "cpu", None
    for key, value in train.items():
        setattr(config.train, key, value)
    return config
