"""CrossModalMatcher: a transformer over two modalities' token states that scores one pair.

Image-text matching (ALBEF, BLIP) as a re-ranker: a bi-encoder finds candidates fast, the
matcher attends across the query's and each candidate's tokens and re-scores the top few.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jointspace._version import __version__
from jointspace.artifacts import load_tensors, read_json, save_tensors
from jointspace.atomic import atomic_dir
from jointspace.config import ConfigError, dumps_json, from_dict
from jointspace.encoders.transformer import transformer_stack
from jointspace.errors import InputError, NotFoundError
from jointspace.models.tokens import Tokens, trim_tokens

MATCHER_DIR, CONFIG_FILE, WEIGHTS_FILE = "matcher", "config.json", "model.safetensors"
METRICS_FILE = "metrics.json"
FORMAT = "jointspace-matcher"


@dataclass
class MatcherConfig:
    """The two modalities a matcher pairs, their token widths and lengths, and its size."""

    modalities: list[str]
    token_dims: dict[str, int]
    max_tokens: dict[str, int]
    width: int = 128
    depth: int = 2
    heads: int = 4
    dropout: float = 0.1
    model_fingerprint: str = ""


class CrossModalMatcher(nn.Module):
    """``[CLS] + tokens(a) + tokens(b)`` through a transformer; the CLS state gives a logit.

    ``score`` adds ``prior_weight`` times the bi-encoder's similarity (a buffer chosen on
    validation data after training, saved with the weights); ``forward`` is the logit alone.
    """

    prior_weight: torch.Tensor  # a buffer, registered in __init__

    def __init__(self, config: MatcherConfig):
        super().__init__()
        if len(config.modalities) != 2:
            raise ConfigError(f"a matcher pairs two modalities, got {config.modalities}")
        self.config = config
        width = config.width
        self.project = nn.ModuleDict(
            {
                m: nn.Sequential(
                    nn.LayerNorm(config.token_dims[m]), nn.Linear(config.token_dims[m], width)
                )
                for m in config.modalities
            }
        )
        self.pos_embed = nn.ParameterDict(
            {
                m: nn.Parameter(torch.randn(config.max_tokens[m], width) * 0.02)
                for m in config.modalities
            }
        )
        self.kind_embed = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(width) * 0.02) for m in config.modalities}
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.encoder = transformer_stack(width, config.depth, config.heads, config.dropout)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, 1)
        self.register_buffer("prior_weight", torch.tensor(0.0))

    @property
    def modalities(self) -> list[str]:
        return list(self.config.modalities)

    def score(self, tokens: Mapping[str, Tokens], prior: torch.Tensor) -> torch.Tensor:
        """The re-ranking score: the matching logit plus ``prior_weight`` × the bi-encoder's."""
        return self(tokens) + self.prior_weight * prior.float()

    def forward(self, tokens: Mapping[str, Tokens]) -> torch.Tensor:
        """One matching logit per row of ``tokens[a]`` paired with the same row of ``tokens[b]``."""
        parts, keep = [], []
        for m in self.config.modalities:
            states, mask = trim_tokens(*tokens[m])
            length = states.shape[1]
            if length > self.config.max_tokens[m]:
                raise InputError(
                    f"{length} {m} tokens; this matcher was trained on at most "
                    f"{self.config.max_tokens[m]}"
                )
            parts.append(
                self.project[m](states.float()) + self.pos_embed[m][:length] + self.kind_embed[m]
            )
            keep.append(mask)
        batch = len(parts[0])
        cls = self.cls_token.expand(batch, -1, -1)
        always = torch.ones(batch, 1, dtype=torch.bool, device=cls.device)
        x = torch.cat([cls, *parts], dim=1)
        x = self.encoder(x, src_key_padding_mask=~torch.cat([always, *keep], dim=1))
        return self.out(self.norm(x[:, 0])).squeeze(-1)


def save_matcher(
    matcher: CrossModalMatcher, directory: str | Path, metrics: dict[str, Any] | None = None
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ ``metrics.json``) atomically (no pickle)."""
    directory = Path(directory)
    meta = {"format": FORMAT, "jointspace_version": __version__, "matcher": matcher.config}
    with atomic_dir(directory) as tmp:
        (tmp / CONFIG_FILE).write_text(dumps_json(meta))
        if metrics is not None:
            (tmp / METRICS_FILE).write_text(dumps_json(metrics))
        state = {k: v.detach().contiguous().cpu() for k, v in matcher.state_dict().items()}
        save_tensors(tmp / WEIGHTS_FILE, state, metadata={"format": FORMAT})
    return directory


def load_matcher(directory: str | Path, model_fingerprint: str | None = None) -> CrossModalMatcher:
    """Load a saved matcher; refuse one trained on top of another bi-encoder."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise NotFoundError(f"no matcher at {directory} ({CONFIG_FILE} missing)")
    meta = read_json(config_path)
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{config_path}: not a jointspace matcher config")
    config = from_dict(MatcherConfig, meta["matcher"], "matcher")
    if model_fingerprint is not None and config.model_fingerprint != model_fingerprint:
        raise ConfigError(
            f"{directory}: this matcher was trained for model {config.model_fingerprint}, not "
            f"{model_fingerprint}; retrain it with `jointspace rerank`"
        )
    matcher = CrossModalMatcher(config)
    matcher.load_state_dict(load_tensors(directory / WEIGHTS_FILE))
    return matcher.eval()
