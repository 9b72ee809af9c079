"""Objectives: pure functions on embeddings plus thin registered modules."""

from jointspace.objectives.contrastive import ClipObjective, clip_loss
from jointspace.objectives.masks import positive_pairs
from jointspace.objectives.miners import AllMiner, HardestMiner, SemiHardMiner
from jointspace.objectives.siglip import SigLipObjective, siglip_loss
from jointspace.objectives.triplet import TripletObjective, margin_loss, triplet_loss

__all__ = [
    "AllMiner",
    "ClipObjective",
    "HardestMiner",
    "SemiHardMiner",
    "SigLipObjective",
    "TripletObjective",
    "clip_loss",
    "margin_loss",
    "positive_pairs",
    "siglip_loss",
    "triplet_loss",
]
