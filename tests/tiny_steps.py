"""Tiny models and batches for the training-step tests (grad cache, checkpointing)."""

from __future__ import annotations

import torch
from torch import nn

from jointspace.config import ModelConfig, TowerConfig
from jointspace.data.collate import Batch
from jointspace.encoders.base import Tower
from jointspace.models.build import build_model
from jointspace.models.joint import JointModel
from jointspace.objectives.base import logit_init

WORDS = ["red", "green", "blue", "square", "circle", "big", "small", "one", "two", "three"]
CORPUS = [" ".join(WORDS[(i * k + k) % len(WORDS)] for k in range(1, 4)) for i in range(60)]
B, CHUNK = 26, 8  # chunks of 8, 8, 8 and 2 rows


def tiny_model(dropout: float, objective: nn.Module, *, lock_image: bool = False) -> JointModel:
    torch.manual_seed(0)
    text = dict(width=16, depth=2, heads=2, max_len=8, vocab_size=60, dropout=dropout)
    image = dict(image_size=16, patch_size=8, width=16, depth=2, heads=2, dropout=dropout)
    config = ModelConfig(
        embed_dim=8,
        towers={
            "text": TowerConfig("transformer", text),
            "image": TowerConfig("vit", image, lock=lock_image),
        },
    )
    model = build_model(config, corpus=CORPUS)
    if (init := logit_init(objective)) is not None:
        model.add_logit_bias(init.bias, init.scale)
    return model.train()


def make_batch(model: JointModel, n: int = B) -> Batch:
    tower = model.tower("text")
    generator = torch.Generator().manual_seed(1)
    texts = [CORPUS[i % 20] for i in range(n)]  # repeated captions: positives beyond the diagonal
    inputs = {
        "text": tower.collate([tower.preprocess(t) for t in texts]),
        "image": torch.randn(n, 3, 16, 16, generator=generator),
    }
    groups = {"text": torch.tensor([texts.index(t) for t in texts]), "image": torch.arange(n)}
    return Batch(inputs, groups, torch.arange(n))


class DictTower(Tower):
    """A tower whose collate gives a dict: ids per row plus a table shared by every row."""

    modality = "text"

    def __init__(self, embed_dim: int):
        super().__init__(embed_dim, {})
        self.embed = nn.Embedding(30, 12)
        self.head = nn.Linear(12, embed_dim)

    def pooled(self, x):
        return (self.embed(x["ids"]) * x["weights"][x["ids"]].unsqueeze(-1)).mean(1)
