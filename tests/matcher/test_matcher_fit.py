"""fit_matcher and the re-ranked evaluation on a task a bag-of-words bi-encoder cannot solve."""

import itertools
import re

import pytest
import torch

from jointspace.config import RerankConfig
from jointspace.matcher.data import MatchingSet
from jointspace.matcher.evaluate import (
    PRIOR_WEIGHTS,
    MatcherEvaluator,
    directions,
    fit_prior_weight,
    rerank_metrics,
    reranked_scores,
    score_directions,
)
from jointspace.matcher.fit import fit_matcher


def order_task(symbols: int = 6, dim: int = 16) -> MatchingSet:
    """Items are ordered symbol pairs; the bi-encoder score is bag-of-words, blind to order."""
    generator = torch.Generator().manual_seed(0)
    words, patches = torch.randn(2, symbols, dim, generator=generator)
    pairs = list(itertools.permutations(range(symbols), 2))
    text = torch.stack([words[list(p)] for p in pairs])
    image = torch.stack([patches[list(p)] for p in pairs])
    bags = torch.zeros(len(pairs), symbols)
    for i, p in enumerate(pairs):
        bags[i, list(p)] = 1.0
    mask = torch.ones(len(pairs), 2, dtype=torch.bool)
    return MatchingSet(
        ("text", "image"),
        {"text": (text, mask), "image": (image, mask)},
        bags @ bags.T / 2,
        torch.eye(len(pairs), dtype=torch.bool),
    )


def test_matcher_tells_apart_what_a_bag_of_words_bi_encoder_cannot():
    data = order_task()
    config = RerankConfig(width=32, depth=2, heads=2, dropout=0.0, epochs=120, batch_size=16)
    config.lr, config.negatives, config.pool, config.progress = 3e-3, 3, 3, False
    fit = fit_matcher(data, config)
    before = rerank_metrics(None, data, candidates=8)
    after = rerank_metrics(fit.matcher, data, candidates=8)
    # (a, b) and (b, a) tie for the bi-encoder, and ties count against it.
    assert before["text_to_image/R@1"] == 0.0 and before["image_to_text/R@1"] == 0.0
    assert after["text_to_image/R@1"] >= 0.9 and after["image_to_text/R@1"] >= 0.9
    assert fit.history[-1]["itm_loss"] < 0.5 * fit.history[0]["itm_loss"]


def test_prior_weight_blends_in_the_bi_encoder_and_is_chosen_on_data():
    data = order_task()
    data.scores += 0.01 * torch.randn(data.scores.shape, generator=torch.Generator().manual_seed(1))
    matcher = fit_matcher(data, RerankConfig(epochs=0, progress=False)).matcher
    matcher.prior_weight.fill_(1e6)  # the bi-encoder's score decides; the matcher's is noise
    for d in directions(matcher, data, candidates=10):
        expected = d.scores.argsort(dim=1, descending=True)
        assert torch.equal(reranked_scores(d, 1e6).argsort(dim=1, descending=True), expected)
    assert rerank_metrics(matcher, data, 10) == rerank_metrics(None, data, 10)
    best = fit_prior_weight(matcher, data, 10, scale=2.0)
    found = directions(matcher, data, 10)
    grid = [score_directions(found, 2.0 * w)["primary"] for w in PRIOR_WEIGHTS]
    assert best == max(grid) and float(matcher.prior_weight) / 2.0 in PRIOR_WEIGHTS
    assert rerank_metrics(matcher, data, 10)["primary"] == best


def test_matcher_evaluator_names_its_primary_metric():
    data = order_task()
    matcher = fit_matcher(data, RerankConfig(epochs=0, progress=False)).matcher
    evaluator = MatcherEvaluator(data, candidates=8, ks=(1, 5))
    for scored in (None, matcher):
        metrics = evaluator(scored)
        assert metrics == rerank_metrics(scored, data, 8, ks=(1, 5))
        assert metrics[evaluator.primary_metric] == metrics["primary"]
    assert "text_to_image/R@5" in metrics and "text_to_image/R@10" not in metrics


class Scripted:
    """An evaluator whose primary metric follows a script; it keeps each epoch's weights."""

    primary_metric = "score"

    def __init__(self, scores):
        self.scores, self.states = list(scores), []

    def __call__(self, matcher):
        self.states.append({k: v.clone() for k, v in matcher.state_dict().items()})
        return {"score": self.scores[len(self.states) - 1], "other": 1.0 - len(self.states)}


def test_fit_matcher_keeps_the_epoch_best_by_the_evaluators_primary_metric():
    config = RerankConfig(width=32, depth=1, heads=2, epochs=3, batch_size=16, progress=False)
    evaluator = Scripted([0.2, 0.9, 0.5])
    fit = fit_matcher(order_task(), config, evaluator=evaluator)
    assert fit.evals == [0.2, 0.9, 0.5]
    kept = fit.matcher.state_dict()
    assert all(torch.equal(kept[k], v) for k, v in evaluator.states[1].items())
    assert not all(torch.equal(kept[k], v) for k, v in evaluator.states[2].items())


def test_progress_lines_when_stderr_is_not_a_terminal(capfd):
    data = order_task()  # 30 pairs, both directions: 60 queries, 4 steps an epoch at 16
    config = RerankConfig(width=16, depth=1, heads=2, dropout=0.0, epochs=5, batch_size=16)
    scores = iter([0.25, 0.5, 0.375, 0.625, 0.125])
    fit = fit_matcher(data, config, evaluator=lambda matcher: next(scores))
    err = capfd.readouterr().err
    assert "\r" not in err
    steps = re.findall(r"^rerank step (\d+)/20  loss ([\d.]+)$", err, re.M)
    assert [int(s) for s, _ in steps] == list(range(2, 21, 2))  # every tenth of the run
    for step, loss in steps:
        assert float(loss) == pytest.approx(fit.history[int(step) - 1]["itm_loss"], abs=5e-5)
    epochs = re.findall(
        r"^rerank epoch (\d)/5 done: mean loss ([\d.]+), validation (\S+)$", err, re.M
    )
    assert [int(e) for e, _, _ in epochs] == [1, 2, 3, 4, 5]
    for epoch, loss, score in epochs:
        losses = [r["itm_loss"] for r in fit.history[4 * (int(epoch) - 1) : 4 * int(epoch)]]
        assert float(loss) == pytest.approx(sum(losses) / 4, abs=5e-5)
        assert float(score) == fit.evals[int(epoch) - 1]
    assert fit.evals == [0.25, 0.5, 0.375, 0.625, 0.125]
