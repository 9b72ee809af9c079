"""Triplet miners: pick (anchor, positive, negative) index triples from a score matrix.

A miner sees ``scores[i, j]`` (anchor row i against candidate column j) and a ``positives``
mask; any margin loss can consume what it returns (like pytorch-metric-learning's miners).
"""

from __future__ import annotations

import torch

Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _pairs(scores: torch.Tensor, positives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if scores.shape != positives.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and positives must have one shape")
    anchors, pos = positives.nonzero(as_tuple=True)
    return anchors, pos


class AllMiner:
    """Every anchor–positive pair with every negative of that anchor."""

    def __call__(self, scores: torch.Tensor, positives: torch.Tensor) -> Triplets:
        anchors, pos = _pairs(scores, positives)
        negatives = ~positives[anchors]  # [pairs, columns]
        pair_index, neg = negatives.nonzero(as_tuple=True)
        return anchors[pair_index], pos[pair_index], neg


class HardestMiner:
    """For each anchor–positive pair, the negative the anchor scores highest (VSE++)."""

    def __call__(self, scores: torch.Tensor, positives: torch.Tensor) -> Triplets:
        anchors, pos = _pairs(scores, positives)
        masked = scores.masked_fill(positives, float("-inf"))[anchors]
        has_negative = torch.isfinite(masked).any(dim=1)
        neg = masked.argmax(dim=1)
        return anchors[has_negative], pos[has_negative], neg[has_negative]


class SemiHardMiner:
    """Negatives scored below the positive but within ``margin`` of it (FaceNet's semi-hard)."""

    def __init__(self, margin: float = 0.2):
        self.margin = margin

    def __call__(self, scores: torch.Tensor, positives: torch.Tensor) -> Triplets:
        anchors, pos, neg = AllMiner()(scores, positives)
        s_ap, s_an = scores[anchors, pos], scores[anchors, neg]
        keep = (s_an < s_ap) & (s_an > s_ap - self.margin)
        return anchors[keep], pos[keep], neg[keep]
