"""The pre-norm transformer stack shared by the text tower and the ViT."""

from __future__ import annotations

from torch import nn


def transformer_stack(width: int, depth: int, heads: int, dropout: float) -> nn.TransformerEncoder:
    """``depth`` pre-norm encoder layers with GELU MLPs of 4× width, batch-first."""
    layer = nn.TransformerEncoderLayer(
        width, heads, 4 * width, dropout, activation="gelu", batch_first=True, norm_first=True
    )
    # enable_nested_tensor=False: the nested fast path warns with norm_first and saves nothing here.
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
