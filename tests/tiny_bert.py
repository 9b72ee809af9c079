"""A tiny random BERT checkpoint (transformers + tokenizers, offline) and hf_text models on it."""

from __future__ import annotations

from pathlib import Path

import torch

from jointspace.config import ModelConfig, TowerConfig
from jointspace.models.build import build_model

CORPUS = [
    "a red apple on a table",
    "a vehicle on rails",
    "the handwritten digit seven",
    "a black cat sleeps on the sofa",
    "two dogs play with a ball",
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_bert(directory: Path, seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide BertModel and its WordPiece tokenizer.json into ``directory``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=120, special_tokens=SPECIALS)
    tokenizer.train_from_iterator(CORPUS, trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    BertModel(config).save_pretrained(directory)
    return directory


def hf_text_model(checkpoint: Path, *, image: bool = True, seed: int = 0, **params):
    """A JointModel with an ``hf_text`` tower on ``checkpoint`` (and a small CNN image tower)."""
    torch.manual_seed(seed)
    towers = {"text": TowerConfig("hf_text", dict(path=str(checkpoint), max_len=16) | params)}
    if image:
        towers["image"] = TowerConfig("cnn", dict(image_size=16, widths=[8, 16]))
    return build_model(ModelConfig(embed_dim=8, towers=towers))
