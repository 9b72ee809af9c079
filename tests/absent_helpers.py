"""A tiny three-modality manifest (text, image, audio) with absent cells, for the missing-modality
tests: four classes, a colour image, a caption and a tone per row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (230, 220, 20),
}
TONES = {"red": 220.0, "green": 440.0, "blue": 880.0, "yellow": 1760.0}
RATE = 8000


def write_three_modality_manifest(
    folder: Path, rows: int = 48, *, audio_every: int = 3, lone_image_rows: tuple[int, ...] = (1,)
) -> Path:
    """``folder/m.csv``: every row has an image; rows ``i % audio_every == 0`` lack audio, and
    ``lone_image_rows`` hold their image alone (no caption, no clip)."""
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
        if i % audio_every:
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
