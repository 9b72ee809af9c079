"""Train a CrossModalMatcher on a fixed bi-encoder's hard negatives (the re-ranking stage)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

import torch

from jointspace.config import RerankConfig
from jointspace.matcher.data import MatchingSet
from jointspace.matcher.loss import hard_negatives, itm_loss, sample_positives
from jointspace.matcher.model import CrossModalMatcher, MatcherConfig
from jointspace.progress import Progress
from jointspace.train.optim import lr_factor, param_groups, set_lr


@dataclass
class MatcherFit:
    """The selected matcher, per-step losses and per-epoch validation scores."""

    matcher: CrossModalMatcher
    history: list[dict[str, float]] = field(default_factory=list)
    evals: list[float] = field(default_factory=list)


def new_matcher(data: MatchingSet, config: RerankConfig) -> CrossModalMatcher:
    """A matcher sized for ``data``'s token states."""
    tokens = data.tokens
    return CrossModalMatcher(
        MatcherConfig(
            modalities=list(data.modalities),
            token_dims={m: tokens[m][0].shape[2] for m in data.modalities},
            max_tokens={m: tokens[m][0].shape[1] for m in data.modalities},
            width=config.width,
            depth=config.depth,
            heads=config.heads,
            dropout=config.dropout,
        )
    )


def fit_matcher(
    data: MatchingSet,
    config: RerankConfig,
    *,
    evaluator: Callable[[CrossModalMatcher], float | Mapping[str, float]] | None = None,
) -> MatcherFit:
    """Train on both directions' queries; keep the epoch ``evaluator`` scores best.

    ``evaluator`` returns a score, or metrics judged by its ``primary_metric``
    (``MatcherEvaluator``).
    The matcher learns from tokens alone: on its own training split a bi-encoder is close to
    perfect, so its scores as an input would leave the matcher nothing to learn.
    """
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    matcher = new_matcher(data, config)
    optimizer = torch.optim.AdamW(param_groups([matcher], config.weight_decay), lr=config.lr)
    queries = [(m, i) for m in data.modalities for i in range(len(data.tokens[m][0]))]
    per_epoch = -(-len(queries) // config.batch_size)
    total = config.epochs * per_epoch
    fit = MatcherFit(matcher)
    best_score, best_state = float("-inf"), None
    # A bar on a terminal; otherwise a line every tenth of the run and one per epoch.
    progress = Progress(total, 0, "rerank", enabled=config.progress, every=max(1, total // 10))
    with progress.active():
        for epoch in range(config.epochs):
            matcher.train()
            order = torch.randperm(len(queries), generator=generator)
            first = len(fit.history)
            for start in range(0, len(order), config.batch_size):
                step = epoch * per_epoch + start // config.batch_size
                set_lr(optimizer, config.lr * lr_factor(step, total, config.warmup_steps, 0.05))
                batch = [queries[j] for j in order[start : start + config.batch_size].tolist()]
                loss = cast(
                    torch.Tensor,
                    sum(
                        _direction_loss(matcher, data, m, rows, config, generator) * len(rows)
                        for m, rows in _by_modality(batch).items()
                    ),
                ) / len(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(matcher.parameters(), 1.0)
                optimizer.step()
                fit.history.append({"step": step + 1, "itm_loss": float(loss.detach())})
                progress.update(step + 1, {"loss": f"{fit.history[-1]['itm_loss']:.4f}"})
            losses = [r["itm_loss"] for r in fit.history[first:]]
            shown = f"rerank epoch {epoch + 1}/{config.epochs} done: mean loss "
            shown += f"{sum(losses) / max(1, len(losses)):.4f}"
            if evaluator is not None:
                score = _primary(evaluator, evaluator(matcher))
                fit.evals.append(score)
                shown += f", validation {score:.4f}"
                if score > best_score:
                    best_score, best_state = score, copy.deepcopy(matcher.state_dict())
            progress.info("%s", shown)
    if best_state is not None:
        matcher.load_state_dict(best_state)
    return fit


def _primary(evaluator, result) -> float:
    # A MatcherEvaluator returns metrics and names the one to maximise; a plain callable, a score.
    return float(result[evaluator.primary_metric] if isinstance(result, Mapping) else result)


def _by_modality(batch: list[tuple[str, int]]) -> dict[str, torch.Tensor]:
    rows: dict[str, list[int]] = {}
    for modality, index in batch:
        rows.setdefault(modality, []).append(index)
    return {m: torch.tensor(r) for m, r in rows.items()}


def _direction_loss(matcher, data, query, rows, config, generator) -> torch.Tensor:
    target, scores, relevant = data.direction(query)
    positives = sample_positives(relevant[rows], generator)
    negatives = hard_negatives(
        scores[rows], relevant[rows], config.negatives, config.pool, generator
    )
    columns = torch.cat([positives[:, None], negatives], dim=1)  # the match in column 0
    width = columns.shape[1]
    tokens = data.pair_tokens(query, rows.repeat_interleave(width), target, columns.reshape(-1))
    return itm_loss(matcher(tokens).view(-1, width))
