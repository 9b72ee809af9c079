"""Built-in ``spoken-digits``: the words zero–nine voiced by espeak-ng in many voices, as WAVs.

Each clip varies voice, speed and pitch; captions describe what is said. *eight* and *nine* are
held out (``zeroshot``), like the ``digits`` set. Needs the Debian package ``espeak-ng``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

from jointspace.atomic import atomic_dir
from jointspace.data.audio import load_audio
from jointspace.data.builtin.digits import HELD_OUT, WORDS
from jointspace.data.builtin.target import dataset_dir, reuse_or_check
from jointspace.data.manifest import ManifestError

VOICES = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
VARIANTS = ("", "+f2", "+m3", "+f4", "+m7")
TEMPLATES = (
    "someone saying {w}",
    "the spoken word {w}",
    "a voice says {d}",
    "{w}, said out loud",
    "a recording of the number {w}",
)
CLIPS_PER_WORD = 80
FRACTIONS = (0.70, 0.15)  # train, val; the rest of each seen word is test
SEED = 0
SAMPLE_RATE = 16_000


def build_spoken_digits(
    root: Path | None = None, *, force: bool = False, overwrite: bool = False
) -> Path:
    """Voice every clip once (atomically) under ``root/spoken-digits``; return the manifest."""
    target = dataset_dir(root, "spoken-digits")
    manifest = target / "manifest.csv"
    if reuse_or_check(target, force=force, overwrite=overwrite):
        return manifest
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise ManifestError("spoken-digits needs the speech synthesiser: apt install espeak-ng")
    rows = manifest_rows()
    with atomic_dir(target) as tmp:
        (tmp / "clips").mkdir()
        for row in rows:
            speak(espeak, row, tmp / row["audio"])
        columns = ["id", "audio", "text", "label", "split"]
        pd.DataFrame(rows)[columns].to_csv(tmp / "manifest.csv", index=False, lineterminator="\n")
    return manifest


def speak(espeak: str, row: dict[str, str], path: Path) -> None:
    """Write one 16 kHz clip: espeak-ng with the row's voice, speed (words/min) and pitch."""
    command = [espeak, "-v", row["voice"], "-s", row["speed"], "-p", row["pitch"], "-w", str(path)]
    subprocess.run([*command, row["word"]], check=True, capture_output=True, timeout=30)
    # espeak-ng writes 22,050 Hz: resample once here rather than on every read.
    soundfile.write(path, load_audio(path, SAMPLE_RATE), SAMPLE_RATE, subtype="PCM_16")


def manifest_rows() -> list[dict[str, str]]:
    """``CLIPS_PER_WORD`` clips per word with random voice, variant, speed, pitch and caption."""
    rng = np.random.default_rng(SEED)
    rows = []
    for digit, word in enumerate(WORDS):
        splits = _splits(digit, rng)
        for k in range(CLIPS_PER_WORD):
            voice = VOICES[rng.integers(len(VOICES))] + VARIANTS[rng.integers(len(VARIANTS))]
            index = digit * CLIPS_PER_WORD + k
            rows.append(
                {
                    "id": f"{index:04d}",
                    "audio": f"clips/{index:04d}.wav",
                    "text": TEMPLATES[rng.integers(len(TEMPLATES))].format(d=digit, w=word),
                    "label": word,
                    "split": splits[k],
                    "voice": voice,
                    "speed": str(int(rng.integers(110, 211))),
                    "pitch": str(int(rng.integers(20, 81))),
                    "word": word,
                }
            )
    return rows


def _splits(digit: int, rng: np.random.Generator) -> list[str]:
    if digit in HELD_OUT:
        return ["zeroshot"] * CLIPS_PER_WORD
    order = rng.permutation(CLIPS_PER_WORD)
    cut_train = round(FRACTIONS[0] * CLIPS_PER_WORD)
    cut_val = cut_train + round(FRACTIONS[1] * CLIPS_PER_WORD)
    names = np.where(order < cut_train, "train", np.where(order < cut_val, "val", "test"))
    return names.tolist()
