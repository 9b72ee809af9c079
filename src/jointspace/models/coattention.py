"""Two-stream co-attention fusion (ViLBERT/LXMERT style) and the ``attention`` head's factory.

Each modality keeps its own stream (own layers); in every layer a stream's tokens first attend
to the other streams' tokens, then to their own, then pass a feed-forward. Each stream is read
out at its own learned CLS token.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from jointspace.config import ConfigError
from jointspace.models.fusion import AttentionFusion, FusionHead, Inputs

STREAMS = ("single", "two")


class _Attend(nn.Module):
    """Pre-norm multi-head attention of ``x`` over ``context``; returns the residual update."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm_query, self.norm_context = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attend = nn.MultiheadAttention(width, heads, batch_first=True)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, padding: torch.Tensor
    ) -> torch.Tensor:
        context = self.norm_context(context)
        out, _ = self.attend(self.norm_query(x), context, context, key_padding_mask=padding)
        return out


class StreamLayer(nn.Module):
    """One layer of one stream: co-attention to the other streams (when any), self-attention,
    feed-forward; each a pre-norm residual step."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.cross, self.own = _Attend(width, heads), _Attend(width, heads)
        self.feed = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
        )

    def forward(
        self,
        x: torch.Tensor,
        padding: torch.Tensor,
        others: torch.Tensor | None = None,
        others_padding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if others is not None and others_padding is not None:
            x = x + self.cross(x, others, others_padding)
        x = x + self.own(x, x, padding)
        return x + self.feed(x)


class CoAttentionFusion(FusionHead):
    """Two-stream: each given modality's projected tokens after its own CLS token, in its own
    stack of :class:`StreamLayer`; a stream's queries attend to the other given modalities'
    tokens (their CLS tokens included, so a row always has a key). The streams' CLS outputs are
    concatenated in a fixed modality order, a learned stand-in filling a missing modality's
    place, then mixed by a linear layer. Padding is masked as a key everywhere, so it never
    changes the result; with one modality given it is self-attention only."""

    def __init__(self, dims: Mapping[str, int], width: int = 128, depth: int = 1, heads: int = 4):
        super().__init__(dims, width)
        if width % heads:
            raise ConfigError(f"attention fusion: width {width} is not divisible by heads {heads}")
        count = len(self.modalities)
        self.cls = nn.Parameter(torch.randn(count, width) * 0.02)
        self.streams = nn.ModuleDict(
            {
                m: nn.ModuleList([StreamLayer(width, heads) for _ in range(depth)])
                for m in self.modalities
            }
        )
        self.norm = nn.LayerNorm(width)
        self.missing = nn.Parameter(torch.zeros(count, width))
        self.mix = nn.Sequential(nn.Linear(count * width, width), nn.GELU())

    def forward(self, inputs: Inputs) -> tuple[torch.Tensor, list[str]]:
        used = self.present(inputs)
        states: dict[str, torch.Tensor] = {}
        padding: dict[str, torch.Tensor] = {}
        for m in used:
            tokens, keep = inputs[m]
            batch = tokens.shape[0]
            cls = self.cls[self.modalities.index(m)].expand(batch, 1, -1)
            states[m] = torch.cat([cls, self.project[m](tokens)], dim=1)
            always = torch.ones(batch, 1, dtype=torch.bool, device=keep.device)
            padding[m] = ~torch.cat([always, keep.bool()], dim=1)  # True: never attended to
        for layer in range(len(self.streams[used[0]])):
            updated = {}
            for m in used:  # every stream reads the others as they were before this layer
                others = [o for o in used if o != m]
                context = torch.cat([states[o] for o in others], 1) if others else None
                masks = torch.cat([padding[o] for o in others], 1) if others else None
                updated[m] = self.streams[m][layer](states[m], padding[m], context, masks)
            states = updated
        batch = states[used[0]].shape[0]
        parts = [
            self.norm(states[m][:, 0]) if m in states else self.missing[i].expand(batch, -1)
            for i, m in enumerate(self.modalities)
        ]
        return self.mix(torch.cat(parts, dim=-1)), used


def attention_fusion(
    dims: Mapping[str, int],
    width: int = 128,
    depth: int = 1,
    heads: int = 4,
    stream: str = "single",
) -> FusionHead:
    """The ``attention`` head: ``stream="single"`` one transformer over all modalities' tokens
    (:class:`AttentionFusion`), ``"two"`` a stream per modality with co-attention."""
    if stream not in STREAMS:
        raise ConfigError(
            f"head.params.stream: attention fusion takes stream 'single' or 'two', not {stream!r}"
        )
    head = AttentionFusion if stream == "single" else CoAttentionFusion
    return head(dims, width=width, depth=depth, heads=heads)
