"""The matcher's ITM loss and the hard negatives and positives it is trained on."""

import math

import pytest
import torch

from jointspace.matcher.loss import hard_negatives, itm_loss, sample_positives


def test_itm_loss_equals_the_naive_formula():
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    naive = -sum(
        math.log(math.exp(row[0]) / sum(math.exp(v) for v in row)) for row in logits.tolist()
    ) / len(logits)
    assert itm_loss(logits).item() == pytest.approx(naive, abs=1e-5)
    with pytest.raises(ValueError, match="negatives"):
        itm_loss(torch.zeros(3, 1))


def test_hard_negatives_come_from_the_best_non_matches():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(20, 50, generator=generator)
    relevant = torch.zeros(20, 50, dtype=torch.bool)
    relevant[torch.arange(20), torch.arange(20)] = True
    picked = hard_negatives(scores, relevant, count=4, pool=8, generator=generator)
    top = scores.masked_fill(relevant, float("-inf")).topk(8, dim=1).indices
    for row, columns in enumerate(picked.tolist()):
        assert len(set(columns)) == 4 and not relevant[row, columns].any()
        assert set(columns) <= set(top[row].tolist())
    assert (relevant[torch.arange(20), sample_positives(relevant, generator)]).all()
    with pytest.raises(ValueError, match="negatives per query"):
        hard_negatives(scores[:, :3], relevant[:, :3], count=4, pool=8)
