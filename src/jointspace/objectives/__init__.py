"""Objectives: pure functions on embeddings plus thin modules built by name (``jointspace.parts``).

Objectives hold no parameters: the model owns the temperature and SigLIP's bias.
"""

from jointspace.objectives.cca import DeepCCAObjective, LinearCCA, dcca_loss
from jointspace.objectives.contrastive import ClipObjective, clip_loss, tiled_clip_loss
from jointspace.objectives.masks import Positives, positive_pairs
from jointspace.objectives.miners import AllMiner, HardestMiner, SemiHardMiner
from jointspace.objectives.siglip import SigLipObjective, siglip_loss, tiled_siglip_loss
from jointspace.objectives.triplet import TripletObjective, margin_loss, triplet_loss

__all__ = [
    "AllMiner",
    "ClipObjective",
    "DeepCCAObjective",
    "HardestMiner",
    "LinearCCA",
    "Positives",
    "SemiHardMiner",
    "SigLipObjective",
    "TripletObjective",
    "clip_loss",
    "dcca_loss",
    "margin_loss",
    "positive_pairs",
    "siglip_loss",
    "tiled_clip_loss",
    "tiled_siglip_loss",
    "triplet_loss",
]
