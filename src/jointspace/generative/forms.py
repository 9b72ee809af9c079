"""Each modality's input form for the MVAE: grayscale pixels in [0, 1], bag-of-words counts over
a vocabulary, per-clip standardised log-mel frames."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jointspace.artifacts import read_json
from jointspace.atomic import write_text_atomic
from jointspace.errors import ArtifactError, InputError
from jointspace.generative.config import MvaeModalityConfig

WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-case runs of letters and digits: "A hand-drawn 7" → a, hand, drawn, 7."""
    return WORD.findall(text.lower())


class Vocabulary:
    """The words a text bag-of-words counts, most frequent in training first."""

    def __init__(self, items: list[str]):
        self.words = list(items)
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, texts: Iterable[str], max_size: int, min_count: int = 1) -> Vocabulary:
        counts = Counter(w for text in texts for w in words(text))
        kept = sorted(
            (w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls(kept[:max_size])

    def counts(self, text: str) -> torch.Tensor:
        """``[len(self)]`` word counts of ``text``; words outside the vocabulary are ignored."""
        row = torch.zeros(len(self))
        for w in words(text):
            if w in self.index:
                row[self.index[w]] += 1
        return row

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps({"words": self.words}, indent=0) + "\n")

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        if not path.is_file():
            raise ArtifactError(f"{path}: missing (the run's text vocabulary)")
        found = read_json(path).get("words")
        if not isinstance(found, list) or not found or not all(isinstance(w, str) for w in found):
            raise ArtifactError(f"{path}: damaged: 'words' must be a non-empty list of strings")
        return cls(found)


class InputForms:
    """Raw inputs (image path/bytes, text, audio path) → the rows the MVAE reads."""

    def __init__(self, specs: Mapping[str, MvaeModalityConfig], vocab: Vocabulary | None):
        if "text" in specs and vocab is None:
            raise ArtifactError("a text modality needs its vocabulary")
        self.specs, self.vocab = dict(specs), vocab
        self._logmel: Any = None

    def shape(self, modality: str) -> tuple[int, ...]:
        spec = self.specs[modality]
        if modality == "image":
            return (1, spec.size, spec.size)
        if modality == "text":
            assert self.vocab is not None
            return (len(self.vocab),)
        return tuple(self.audio(np.zeros(1, dtype=np.float32)).shape)

    def __call__(self, modality: str, raw: Any) -> torch.Tensor:
        if modality == "image":
            return self.image(raw)
        if modality == "text":
            return self.text(raw)
        return self.audio(raw)

    def image(self, source: Any) -> torch.Tensor:
        """``[1, size, size]`` grayscale in [0, 1] (white 1), resized with antialiasing."""
        from PIL import Image

        from jointspace.data.image import load_image

        size = self.specs["image"].size
        gray = load_image(source).convert("L").resize((size, size), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.asarray(gray, dtype=np.float32) / 255.0).unsqueeze(0)

    def text(self, text: str) -> torch.Tensor:
        """Bag-of-words counts; a text with no known word at all is refused."""
        assert self.vocab is not None
        row = self.vocab.counts(text)
        if not bool(row.any()):
            shown = ", ".join(self.vocab.words[:8])
            raise InputError(
                f"text {text!r}: none of its words is in the vocabulary ({len(self.vocab)} "
                f"words, e.g. {shown})"
            )
        return row

    def audio(self, source: Any) -> torch.Tensor:
        """``[n_mels, frames]`` log-mel of the clip's centred ``seconds``, standardised per clip
        (a unit-variance Gaussian then fits every clip alike)."""
        from jointspace.data.audio import AudioTransform
        from jointspace.encoders.audio import LogMel

        spec = self.specs["audio"]
        if self._logmel is None:
            self._logmel = LogMel(spec.sample_rate, 2 * spec.hop, spec.hop, spec.n_mels)
        crop = AudioTransform(spec.sample_rate, spec.seconds)
        wave = crop(source) if isinstance(source, np.ndarray) else crop.load(source)
        with torch.no_grad():
            mel = self._logmel(wave.unsqueeze(0))[0, 0]
        return (mel - mel.mean()) / mel.std().clamp_min(1e-5)
