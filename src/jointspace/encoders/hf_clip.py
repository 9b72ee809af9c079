"""The two halves of a local Hugging Face CLIP or SigLIP checkpoint, each with its own projection.

``hf_clip_text`` / ``hf_clip_image`` give exactly ``get_text_features`` / ``get_image_features``
of ``CLIPModel`` (``SiglipModel``): the checkpoint's projection is the tower's ``head``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from jointspace.config import ConfigError
from jointspace.encoders.base import Tower
from jointspace.encoders.hf_files import (
    IMAGE_FILES,
    TEXT_FILES,
    checkpoint_dir,
    dual_kind,
    find_layers,
    from_config,
    load_pretrained,
    read_files,
    read_json_file,
    write_files,
)
from jointspace.encoders.hf_preprocess import HFImageInputs, HFImageProcessor
from jointspace.errors import InputTypeError

# A saved model's subdirectory per tower: the checkpoint's config.json plus its tokenizer or
# preprocessing files, so the model loads (and exports) without the original directory.
TEXT_ASSETS, IMAGE_ASSETS = "hf_clip_text", "hf_clip_image"
# Padding in collated ids: never a real token, so a pad token equal to the end token
# (OpenAI's CLIP pads with <|endoftext|>) cannot be mistaken for text.
PAD = -1


def dual_model(path: str, assets: Path | None, needs: tuple[str, ...]) -> tuple[nn.Module, Path]:
    """The full CLIPModel/SiglipModel: from saved assets (architecture only) or ``path``."""
    if assets is not None and (assets / "config.json").is_file():
        return from_config(assets), assets
    source = checkpoint_dir(path, needs, what="a CLIP or SigLIP checkpoint")
    dual_kind(source)
    return load_pretrained(source), source


class HFClipText(Tower):
    """The text half: tokenizer.json → text model → the checkpoint's text projection."""

    modality = "text"
    built_args = ("model", "source")
    text_model: nn.Module
    head: nn.Module

    def __init__(
        self,
        embed_dim: int,
        model: nn.Module | None = None,
        source: Path | None = None,
        path: str = "",
        max_len: int | None = None,
    ):
        super().__init__(embed_dim, dict(path=path, max_len=max_len))
        if model is None or source is None:
            raise ConfigError("hf_clip_text is built by Tower.create from params {path: DIR}")
        self.kind = model.config.model_type
        self.hf_config = model.config
        self.files = read_files(source, TEXT_FILES)
        self.text_model = model.text_model
        if self.kind == "siglip":
            # SigLIP's projection sits inside its text model: it becomes the tower's head.
            self.head = self.text_model.head
            self.text_model.head = nn.Identity()
        else:
            self.head = model.text_projection
        out_dim = self.head.out_features
        if out_dim != embed_dim:
            raise ConfigError(
                f"hf_clip_text: {path} projects to {out_dim} dimensions, model.embed_dim is "
                f"{embed_dim}; set model.embed_dim: {out_dim} (model.pretrained does this)"
            )
        self.tokenizer, self.pad_value, self.max_len = text_settings(
            source, self.text_model.config, max_len
        )
        # SigLIP reads the last position, padding included (as trained): no length buckets.
        self.pad_id: int | None = None if self.kind == "siglip" else PAD

    @classmethod
    def create(cls, embed_dim, params, *, corpus=None, assets_dir=None) -> HFClipText:
        assets = assets_dir / TEXT_ASSETS if assets_dir is not None else None
        model, source = dual_model(params.get("path", ""), assets, ("tokenizer.json",))
        return cls(embed_dim, model, source, **params)

    def save_assets(self, directory: Path) -> None:
        save_config(directory / TEXT_ASSETS, self.hf_config, self.files)

    def layers(self) -> list[nn.Module]:
        return find_layers(self.text_model.encoder)

    def preprocessing(self) -> dict[str, Any]:
        return super().preprocessing() | {"max_len": self.max_len, "pad": self.pad_value}

    def preprocess(self, raw: Any, rng: np.random.Generator | None = None) -> str:
        if not isinstance(raw, str):
            raise InputTypeError(f"text input must be a string, got {type(raw).__name__}")
        return raw

    def collate(self, items: list[str]) -> torch.Tensor:
        encoded = [e.ids for e in self.tokenizer.encode_batch(items)]
        if self.kind == "siglip":  # padded to max_length with the pad token, as the processor does
            length, fill = self.max_len, self.pad_value
        else:  # padded to the longest text; the mask keeps padding out
            length, fill = max((len(ids) for ids in encoded), default=1), PAD
        batch = torch.full((len(encoded), length), fill, dtype=torch.long)
        for row, ids in enumerate(encoded):
            batch[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return batch

    def _run(self, token_ids: torch.Tensor) -> tuple[Any, torch.Tensor]:
        mask = token_ids != PAD
        ids = torch.where(mask, token_ids, self.pad_value)
        if self.kind == "siglip":  # no attention mask: SigLIP's processor gives none
            return self.text_model(input_ids=ids), mask
        return self.text_model(input_ids=ids, attention_mask=mask.long()), mask

    def tokens(self, token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, mask = self._run(token_ids)
        return out.last_hidden_state, mask

    def pooled(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self._run(token_ids)[0].pooler_output


class HFClipImage(HFImageInputs, Tower):
    """The vision half: preprocessor_config.json steps → vision model → visual projection."""

    modality = "image"
    built_args = ("model", "source")
    vision_model: nn.Module
    head: nn.Module

    def __init__(
        self,
        embed_dim: int,
        model: nn.Module | None = None,
        source: Path | None = None,
        path: str = "",
    ):
        super().__init__(embed_dim, dict(path=path))
        if model is None or source is None:
            raise ConfigError("hf_clip_image is built by Tower.create from params {path: DIR}")
        self.kind = model.config.model_type
        self.hf_config = model.config
        self.files = read_files(source, IMAGE_FILES)
        self.transform = HFImageProcessor.from_file(source / "preprocessor_config.json")
        self.vision_model = model.vision_model
        out_dim = model.config.vision_config.hidden_size
        if self.kind == "siglip":
            # SigLIP's attention-pooling head is part of its vision model: no further projection.
            self.head = nn.Identity()
        else:
            self.head = model.visual_projection
            out_dim = self.head.out_features
        if out_dim != embed_dim:
            raise ConfigError(
                f"hf_clip_image: {path} gives {out_dim}-dimensional embeddings, model.embed_dim "
                f"is {embed_dim}; set model.embed_dim: {out_dim} (model.pretrained does this)"
            )

    @classmethod
    def create(cls, embed_dim, params, *, corpus=None, assets_dir=None) -> HFClipImage:
        assets = assets_dir / IMAGE_ASSETS if assets_dir is not None else None
        model, source = dual_model(params.get("path", ""), assets, IMAGE_FILES)
        return cls(embed_dim, model, source, **params)

    def save_assets(self, directory: Path) -> None:
        save_config(directory / IMAGE_ASSETS, self.hf_config, self.files)

    def layers(self) -> list[nn.Module]:
        layers = find_layers(self.vision_model.encoder)
        head = getattr(self.vision_model, "head", None)  # SigLIP's attention pooling comes last
        return [*layers, head] if isinstance(head, nn.Module) else layers

    def tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.vision_model(pixel_values=images).last_hidden_state
        return states, torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=images).pooler_output


def text_settings(
    source: Path, text_config: Any, max_len: int | None
) -> tuple[Tokenizer, int, int]:
    """The tokenizer (truncating, padding off) with its pad id and maximum length, read like
    transformers does: tokenizer.json, tokenizer_config.json, then the model's config."""
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    extra = source / "tokenizer_config.json"
    settings = read_json_file(extra) if extra.is_file() else {}
    positions = int(getattr(text_config, "max_position_embeddings", 0) or 0)
    limit = settings.get("model_max_length")
    if max_len is None:
        known = [int(v) for v in (limit, positions) if isinstance(v, int) and 0 < v < 1_000_000]
        max_len = min(known) if known else 64
    if positions and max_len > positions:
        raise ConfigError(f"max_len {max_len}: the text model has only {positions} positions")
    pad = _pad_id(tokenizer, settings, text_config)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_len)
    return tokenizer, pad, max_len


def _pad_id(tokenizer: Tokenizer, settings: dict, text_config: Any) -> int:
    if tokenizer.padding is not None:
        return int(tokenizer.padding["pad_id"])
    token = settings.get("pad_token")
    if isinstance(token, dict):
        token = token.get("content")
    if isinstance(token, str) and tokenizer.token_to_id(token) is not None:
        return int(tokenizer.token_to_id(token))
    pad = getattr(text_config, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def save_config(directory: Path, config: Any, files: dict[str, bytes]) -> None:
    """Write the checkpoint's config.json and copied files into a saved model's assets."""
    write_files(directory, files)
    config.save_pretrained(directory)
