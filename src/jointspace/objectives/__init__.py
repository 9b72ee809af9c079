"""Objectives: pure functions on embeddings plus thin registered modules."""

from jointspace.objectives.contrastive import ClipObjective, clip_loss
from jointspace.objectives.masks import positive_pairs

__all__ = ["ClipObjective", "clip_loss", "positive_pairs"]
