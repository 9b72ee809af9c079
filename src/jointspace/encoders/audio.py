"""An audio tower: log-mel spectrogram (torch.stft) → small CNN → projection head.

``crop`` picks the clip's window (``data/audio_crops.py``); with ``windows`` an evaluation clip is
``[windows, samples]`` and its embedding the mean over its windows that are not all zeros.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jointspace.data.audio import AudioTransform
from jointspace.encoders.base import Tower
from jointspace.encoders.heads import projection_head
from jointspace.encoders.image import conv_stages, map_tokens


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10 ** (np.asarray(mel) / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int) -> np.ndarray:
    """``[n_mels, n_fft // 2 + 1]`` triangular filters, evenly spaced on the HTK mel scale."""
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(0, hz_to_mel(sample_rate / 2), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0, None).astype(np.float32)


class LogMel(nn.Module):
    """Waveforms ``[B, T]`` → log-mel spectrograms ``[B, 1, n_mels, frames]``."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        bank = torch.from_numpy(mel_filterbank(n_fft, n_mels, sample_rate))
        self.register_buffer("filterbank", bank, persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            power = self._real_power(waves.float())  # ONNX has no complex STFT
        else:
            spec = torch.stft(
                waves.float(), self.n_fft, self.hop, window=self.window, return_complex=True
            )
            power = spec.abs() ** 2
        return torch.log(self.filterbank @ power + 1e-6).unsqueeze(1)

    def _real_power(self, waves: torch.Tensor) -> torch.Tensor:
        """``|stft|²`` as torch.stft (centred, reflect-padded) computes it, by a strided conv with
        windowed cosine and sine kernels: real ops only, so it exports."""
        n = torch.arange(self.n_fft, dtype=torch.float32, device=waves.device)
        k = torch.arange(self.n_fft // 2 + 1, dtype=torch.float32, device=waves.device)
        angle = 2 * torch.pi * k[:, None] * n[None, :] / self.n_fft
        kernels = torch.cat([torch.cos(angle), torch.sin(angle)]) * self.window
        padded = F.pad(waves.unsqueeze(1), (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        parts = F.conv1d(padded, kernels.unsqueeze(1), stride=self.hop)
        real, imag = parts.chunk(2, dim=1)
        return real**2 + imag**2


class AudioCNN(Tower):
    """Log-mel spectrogram, per-clip normalised, through conv stages, then average pool."""

    modality = "audio"

    def __init__(
        self,
        embed_dim: int,
        sample_rate: int = 16_000,
        seconds: float = 2.0,
        n_mels: int = 64,
        n_fft: int = 512,
        hop: int = 160,
        widths: tuple[int, ...] | list[int] = (32, 64, 128),
        head: str = "linear",
        crop: str = "center",
        max_windows: int = 8,
    ):
        params = dict(sample_rate=sample_rate, seconds=seconds, n_mels=n_mels, n_fft=n_fft)
        params |= dict(hop=hop, widths=list(widths), head=head)
        # Only a non-default crop is recorded: today's runs keep their params and fingerprints.
        if crop != "center":
            params |= dict(crop=crop) | (dict(max_windows=max_windows) if crop == "windows" else {})
        super().__init__(embed_dim, params)
        self.transform = AudioTransform(sample_rate, seconds, crop, max_windows)
        self.logmel = LogMel(sample_rate, n_fft, hop, n_mels)
        self.features = conv_stages(1, widths)
        self.head = projection_head(widths[-1], embed_dim, head)

    def layers(self) -> list[nn.Module]:
        return list(self.features)

    def preprocess(self, raw: Any, rng: np.random.Generator | None = None) -> torch.Tensor:
        # A path, bytes or (array, rate); only the frames the fixed-length clip keeps are decoded.
        return self.transform.load(raw, rng)

    def collate(self, items: list[torch.Tensor]) -> torch.Tensor:
        if items[0].dim() == 1:
            return torch.stack(items)
        # Windows of clips of different lengths: zero windows pad, and pooling leaves them out.
        padded = torch.zeros(len(items), max(len(x) for x in items), items[0].shape[-1])
        for row, windows in zip(padded, items, strict=True):
            row[: len(windows)] = windows
        return padded

    def feature_map(self, waves: torch.Tensor) -> torch.Tensor:
        spec = self.logmel(waves)
        # Per-clip standardisation: loudness and recording level do not change the embedding.
        mean = spec.mean(dim=(2, 3), keepdim=True)
        std = spec.std(dim=(2, 3), keepdim=True).clamp_min(1e-5)
        return self.features((spec - mean) / std)

    def pooled(self, waves: torch.Tensor) -> torch.Tensor:
        if waves.dim() == 2:
            return self.feature_map(waves).mean(dim=(2, 3))
        rows, count, _ = waves.shape
        pooled = self.feature_map(waves.flatten(0, 1)).mean(dim=(2, 3)).unflatten(0, (rows, count))
        weights = _valid_windows(waves).to(pooled.dtype).unsqueeze(-1)
        return (pooled * weights).sum(1) / weights.sum(1)

    def tokens(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if waves.dim() == 2:
            return map_tokens(self.feature_map(waves))
        rows, count, _ = waves.shape
        states, _ = map_tokens(self.feature_map(waves.flatten(0, 1)))
        per_window = states.shape[1]
        mask = _valid_windows(waves).repeat_interleave(per_window, dim=1)
        return states.reshape(rows, count * per_window, -1), mask


def _valid_windows(waves: torch.Tensor) -> torch.Tensor:
    """``[rows, windows]``: True for windows with any non-zero sample (all, for a silent clip)."""
    valid = waves.abs().amax(dim=-1) > 0
    return valid | ~valid.any(dim=1, keepdim=True)
