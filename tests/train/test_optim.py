import itertools

import pytest
from torch import nn

from jointspace.config import TrainConfig
from jointspace.train.optim import build_optimizer, lr_factor


def test_no_weight_decay_on_biases_norms_and_embeddings():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    model.pos_embed = nn.Parameter(nn.init.normal_(nn.Linear(4, 4).weight.detach().clone()))
    optimizer = build_optimizer([model], TrainConfig(weight_decay=0.2))
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    assert [tuple(p.shape) for p in decay["params"]] == [(4, 4)]  # only the Linear weight
    assert len(no_decay["params"]) == 4  # bias, norm weight, norm bias, pos_embed


def test_warmup_then_cosine_to_the_floor():
    factors = [lr_factor(s, total_steps=110, warmup_steps=10, min_ratio=0.1) for s in range(110)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))  # decays after warmup
    assert lr_factor(110, 110, 10, 0.1) == pytest.approx(0.1)
    assert factors[60] == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the cosine
