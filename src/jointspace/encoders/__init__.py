"""Encoder towers, one per modality, registered by name (``@register("encoder", ...)``)."""

from jointspace.encoders.base import Tower
from jointspace.encoders.image import SmallCNN, SmallViT
from jointspace.encoders.text import TextTransformer

__all__ = ["SmallCNN", "SmallViT", "TextTransformer", "Tower"]
