"""Whether the model still produces finite embeddings: checked at start and on every search."""

from __future__ import annotations

import io

import numpy as np
import soundfile
from fastapi import HTTPException
from PIL import Image

from jointspace.models.joint import JointModel


class Probe:
    """Embeds one small input per modality at start; ``problem`` says what went wrong, if any."""

    def __init__(self, model: JointModel):
        self.problem: str | None = None
        for modality in model.modalities:
            vector = model.encode([_probe_input(modality)], modality)
            if not np.isfinite(vector).all():
                self.problem = _message(modality)
                break

    def check(self, vectors: np.ndarray, modality: str) -> None:
        """503 (and ``/health`` not ok from then on) when ``vectors`` hold NaN or infinity."""
        if not np.isfinite(vectors).all():
            self.problem = _message(modality)
            raise HTTPException(503, self.problem)


def _message(modality: str) -> str:
    return (
        f"the model's {modality} tower produces non-finite embeddings (NaN or infinite "
        "weights?); searches cannot be answered"
    )


def _probe_input(modality: str):
    if modality == "text":
        return "a probe"
    if modality == "image":
        return Image.new("RGB", (32, 32), (128, 128, 128))
    buffer = io.BytesIO()
    tone = 0.1 * np.sin(np.linspace(0, 2 * np.pi * 440, 16_000)).astype(np.float32)
    soundfile.write(buffer, tone, 16_000, format="WAV")
    return buffer.getvalue()
