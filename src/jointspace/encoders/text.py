"""Text tower: WordPiece tokens → transformer encoder → mean/CLS pooling → projection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from jointspace.config import ConfigError
from jointspace.encoders.base import Tower
from jointspace.encoders.heads import projection_head
from jointspace.encoders.tokenizer import PAD_ID, load_tokenizer, train_wordpiece
from jointspace.encoders.transformer import transformer_stack
from jointspace.errors import InputError, InputTypeError

TOKENIZER_FILE = "tokenizer.json"


class TextTransformer(Tower):
    """A small pre-norm transformer encoder over WordPiece tokens."""

    modality = "text"
    pad_id = PAD_ID  # padded positions hold this id (fast encoding trims them)

    def __init__(
        self,
        embed_dim: int,
        tokenizer: Tokenizer,
        width: int = 128,
        depth: int = 2,
        heads: int = 4,
        max_len: int = 32,
        vocab_size: int = 2000,
        pooling: str = "mean",
        dropout: float = 0.0,
        head: str = "linear",
    ):
        params = dict(width=width, depth=depth, heads=heads, max_len=max_len)
        params |= dict(vocab_size=vocab_size, pooling=pooling, dropout=dropout, head=head)
        super().__init__(embed_dim, params)
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"text pooling must be 'mean' or 'cls', got {pooling!r}")
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.token_embed = nn.Embedding(tokenizer.get_vocab_size(), width, padding_idx=PAD_ID)
        self.pos_embed = nn.Parameter(torch.randn(max_len, width) * 0.02)
        self.encoder = transformer_stack(width, depth, heads, dropout)
        self.norm = nn.LayerNorm(width)
        self.head = projection_head(width, embed_dim, head)

    @classmethod
    def create(cls, embed_dim, params, *, corpus=None, assets_dir=None) -> TextTransformer:
        max_len = params.get("max_len", 32)
        saved = assets_dir / TOKENIZER_FILE if assets_dir is not None else None
        if saved is not None and saved.is_file():
            tokenizer = load_tokenizer(saved, max_len)
        elif corpus:
            tokenizer = train_wordpiece(corpus, params.get("vocab_size", 2000), max_len)
        else:
            raise InputError("the text tower needs a corpus to train its tokenizer, or a saved one")
        return cls(embed_dim, tokenizer, **params)

    def save_assets(self, directory: Path) -> None:
        self.tokenizer.save(str(directory / TOKENIZER_FILE))

    def preprocess(self, raw: Any, rng: np.random.Generator | None = None) -> str:
        if not isinstance(raw, str):
            raise InputTypeError(f"text input must be a string, got {type(raw).__name__}")
        return raw

    def collate(self, items: list[str]) -> torch.Tensor:
        encodings = self.tokenizer.encode_batch(items)
        return torch.tensor([e.ids for e in encodings], dtype=torch.long)

    def layers(self) -> list[nn.Module]:
        return list(self.encoder.layers)

    def tokens(self, token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = token_ids != PAD_ID
        x = self.token_embed(token_ids) + self.pos_embed[: token_ids.shape[1]]
        return self.norm(self.encoder(x, src_key_padding_mask=~keep)), keep

    def pooled(self, token_ids: torch.Tensor) -> torch.Tensor:
        return pool_tokens(*self.tokens(token_ids), self.pooling)


def pool_tokens(states: torch.Tensor, keep: torch.Tensor, pooling: str) -> torch.Tensor:
    """The first token (``cls``) or the mean of the valid ones (``mean``)."""
    if pooling == "cls":
        return states[:, 0]
    weights = keep.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1).clamp_min(1.0)
