"""Encoder towers, one per modality, built by name (see ``jointspace.parts``)."""

from jointspace.encoders.audio import AudioCNN
from jointspace.encoders.base import Tower
from jointspace.encoders.efficientnet import EfficientNetTower
from jointspace.encoders.hf_clip import HFClipImage, HFClipText
from jointspace.encoders.hf_vision import HFVision
from jointspace.encoders.image import SmallCNN, SmallViT
from jointspace.encoders.pretrained_text import PretrainedText
from jointspace.encoders.text import TextTransformer

__all__ = [
    "AudioCNN",
    "EfficientNetTower",
    "HFClipImage",
    "HFClipText",
    "HFVision",
    "PretrainedText",
    "SmallCNN",
    "SmallViT",
    "TextTransformer",
    "Tower",
]
