"""Retrieval with re-ranking: the bi-encoder's top candidates re-scored by a matcher."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from jointspace.evaluate.metrics import retrieval_metrics
from jointspace.matcher.data import MatchingSet
from jointspace.matcher.model import CrossModalMatcher
from jointspace.models.modes import evaluating

PAIR_CHUNK = 512  # pairs per matcher forward pass when re-scoring
# Bi-encoder weights tried by ``fit_prior_weight``, in units of the model's logit scale.
PRIOR_WEIGHTS = (0.0, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)


class MatcherEvaluator:
    """Retrieval both ways on ``data`` with each query's top ``candidates`` re-ranked.

    Called with a matcher (None: the bi-encoder alone) it returns Recall@K, mAP and median rank
    per direction; ``primary_metric`` names the one to maximise (``fit_matcher`` keeps its best).
    """

    primary_metric = "mean_recall"

    def __init__(self, data: MatchingSet, candidates: int, ks: Sequence[int] = (1, 5, 10)):
        self.data, self.candidates, self.ks = data, candidates, tuple(ks)

    def __call__(self, matcher: CrossModalMatcher | None) -> dict[str, float]:
        weight = None if matcher is None else float(matcher.prior_weight)
        return score_directions(directions(matcher, self.data, self.candidates), weight, self.ks)


@dataclass
class Direction:
    """One retrieval direction: bi-encoder scores, matches, the matcher's logits for the top."""

    name: str
    scores: torch.Tensor
    relevant: torch.Tensor
    top: torch.Tensor | None = None  # [queries, candidates] columns re-scored
    logits: torch.Tensor | None = None  # the matcher's logits for them


@torch.no_grad()
def directions(
    matcher: CrossModalMatcher | None, data: MatchingSet, candidates: int
) -> list[Direction]:
    """Both directions of ``data``, with the matcher's logits for each query's top candidates."""
    found = []
    for query in data.modalities:
        target, scores, relevant = data.direction(query)
        direction = Direction(f"{query}_to_{target}", scores, relevant)
        if matcher is not None:
            depth = min(candidates, scores.shape[1])
            direction.top = scores.topk(depth, dim=1).indices
            direction.logits = _logits(matcher, data, query, target, direction.top)
        found.append(direction)
    return found


def _logits(matcher, data, query, target, top) -> torch.Tensor:
    rows = torch.arange(len(top)).repeat_interleave(top.shape[1])
    columns = top.reshape(-1)
    with evaluating(matcher):
        chunks = [
            matcher(
                data.pair_tokens(
                    query, rows[s : s + PAIR_CHUNK], target, columns[s : s + PAIR_CHUNK]
                )
            )
            for s in range(0, len(rows), PAIR_CHUNK)
        ]
    return torch.cat(chunks).view(top.shape)


def reranked_scores(direction: Direction, prior_weight: float) -> torch.Tensor:
    """Scores in the order of ``logit + prior_weight · bi-score`` for the top, then the rest."""
    scores, top, logits = direction.scores, direction.top, direction.logits
    assert top is not None and logits is not None, "the direction was scored without a matcher"
    final = logits + prior_weight * scores.gather(1, top)
    # Re-scored candidates get depth..1 in their new order; the rest keep theirs, below 0.
    out = scores - scores.max() - 1.0
    depth = top.shape[1]
    values = torch.arange(depth, 0, -1, dtype=out.dtype).expand(len(out), -1)
    return out.scatter(1, top.gather(1, final.argsort(dim=1, descending=True)), values)


def score_directions(
    found: list[Direction], prior_weight: float | None, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@K, mAP and median rank per direction (``prior_weight`` None: bi-encoder alone)."""
    metrics: dict[str, float] = {}
    for d in found:
        scores = d.scores if prior_weight is None else reranked_scores(d, prior_weight)
        found_metrics = retrieval_metrics(scores.numpy(), d.relevant.numpy(), ks)
        metrics |= {f"{d.name}/{k}": v for k, v in found_metrics.items()}
    metrics["mean_recall"] = float(np.mean([v for k, v in metrics.items() if "/R@" in k]))
    metrics["primary"] = metrics[MatcherEvaluator.primary_metric]
    return metrics


def rerank_metrics(
    matcher: CrossModalMatcher | None,
    data: MatchingSet,
    candidates: int,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Retrieval metrics with the top ``candidates`` re-ranked (None: the bi-encoder alone)."""
    return MatcherEvaluator(data, candidates, ks)(matcher)


def fit_prior_weight(
    matcher: CrossModalMatcher,
    data: MatchingSet,
    candidates: int,
    scale: float,
    ks: Sequence[int] = (1, 5, 10),
) -> float:
    """Set ``matcher.prior_weight`` to the grid value best on ``data``; return that primary."""
    found = directions(matcher, data, candidates)
    primary = {w: score_directions(found, w * scale, ks)["primary"] for w in PRIOR_WEIGHTS}
    best = max(PRIOR_WEIGHTS, key=lambda w: primary[w])  # the first, i.e. smallest, of ties
    matcher.prior_weight.fill_(best * scale)
    return primary[best]
