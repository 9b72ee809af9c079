import math

import pytest
import torch
import torch.nn.functional as F

from jointspace.objectives import (
    AllMiner,
    HardestMiner,
    SemiHardMiner,
    SigLipObjective,
    TripletObjective,
    margin_loss,
    siglip_loss,
    triplet_loss,
)


def unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)


def duplicates(n):
    positives = torch.eye(n, dtype=torch.bool)
    positives[0, 1] = positives[1, 0] = True  # rows 0 and 1 share an image
    return positives


def naive_siglip(a, b, scale, bias, positives):
    total = 0.0
    for i in range(len(a)):
        for j in range(len(b)):
            z = 1.0 if (i == j or (positives is not None and positives[i, j])) else -1.0
            logit = math.exp(scale) * float(a[i] @ b[j]) + bias
            total += -math.log(1 / (1 + math.exp(-z * logit)))
    return total / len(a)


@pytest.mark.parametrize("positives", [None, duplicates(6)])
def test_siglip_equals_the_explicit_double_loop(positives):
    a, b = unit(6, 5, 0), unit(6, 5, 1)
    scale, bias = torch.tensor(math.log(10.0)), torch.tensor(-3.0)
    got = siglip_loss(a, b, scale, bias, positives)
    assert float(got) == pytest.approx(naive_siglip(a, b, float(scale), -3.0, positives), abs=1e-5)


def brute_force_vse(a, b, positives, margin, hardest):
    s = a @ b.T
    total = 0.0
    for scores, pos in ((s, positives), (s.T, positives.T)):
        for i in range(len(a)):
            hinges = [
                max(0.0, margin - float(scores[i, i]) + float(scores[i, k]))
                for k in range(len(a))
                if not pos[i, k] and k != i
            ]
            total += max(hinges, default=0.0) if hardest else sum(hinges)
    return total / len(a)


@pytest.mark.parametrize("reduction", ["sum", "max"])
def test_triplet_equals_brute_force_hinges(reduction):
    a, b = unit(7, 4, 2), unit(7, 4, 3)
    positives = duplicates(7)
    got = triplet_loss(a, b, positives, margin=0.3, reduction=reduction)
    expected = brute_force_vse(a, b, positives, 0.3, hardest=reduction == "max")
    assert float(got) == pytest.approx(expected, abs=1e-6)


def test_hardest_miner_matches_max_violation():
    a, b = unit(6, 4, 4), unit(6, 4, 5)
    scores, positives = a @ b.T, torch.eye(6, dtype=torch.bool)
    triplets = HardestMiner()(scores, positives)
    per_anchor = (0.2 - scores.diagonal() + scores[triplets[0], triplets[2]]).clamp_min(0)
    expected = triplet_loss(a, b, None, 0.2, "max") * 6  # both directions, undo the mean
    one_way = per_anchor.sum()
    back = HardestMiner()(scores.T, positives)
    other_way = (0.2 - scores.diagonal() + scores.T[back[0], back[2]]).clamp_min(0).sum()
    assert float(one_way + other_way) == pytest.approx(float(expected), abs=1e-5)


def test_semi_hard_miner_returns_only_valid_triplets():
    a, b = unit(12, 3, 6), unit(12, 3, 7)
    scores, positives = a @ b.T, duplicates(12)
    anchors, pos, neg = SemiHardMiner(margin=0.5)(scores, positives)
    assert len(anchors) > 0
    assert positives[anchors, pos].all() and not positives[anchors, neg].any()
    s_ap, s_an = scores[anchors, pos], scores[anchors, neg]
    assert ((s_an < s_ap) & (s_an > s_ap - 0.5)).all()
    everything = AllMiner()(scores, positives)
    assert len(everything[0]) == int(positives.sum()) * 12 - int(
        positives.sum(1) @ positives.sum(1)
    )


def test_margin_loss_without_triplets_is_zero_with_a_graph():
    scores = torch.zeros(3, 3, requires_grad=True)
    empty = torch.empty(0, dtype=torch.long)
    loss = margin_loss(scores, (empty, empty, empty), 0.2)
    loss.backward()
    assert loss.item() == 0.0 and scores.grad is not None


def test_triplet_objective_with_miner_and_bad_reduction():
    embeddings = {"text": unit(5, 3, 8).float(), "image": unit(5, 3, 9).float()}
    mined = TripletObjective(margin=0.2, miner="hardest")(embeddings)["triplet_loss"]
    reduced = TripletObjective(margin=0.2, reduction="max")(embeddings)["triplet_loss"]
    # One positive per anchor: the mean over hardest triplets is the max-violation loss.
    assert float(mined) == pytest.approx(float(reduced), abs=1e-6) and float(mined) > 0
    with pytest.raises(ValueError, match="reduction must be one of"):
        TripletObjective(reduction="mean")
    with pytest.raises(KeyError, match="unknown miner 'nope'"):
        TripletObjective(miner="nope")


def test_combined_objective_weights_terms_and_logs_each():
    from jointspace.config import ObjectiveConfig
    from jointspace.objectives.combined import build_objective

    embeddings = {"text": unit(6, 4, 10).float(), "image": unit(6, 4, 11).float()}
    scale = torch.tensor(math.log(1 / 0.07))
    configs = [
        ObjectiveConfig("clip", weight=1.0),
        ObjectiveConfig("triplet", {"reduction": "sum"}, weight=0.5),
        ObjectiveConfig("triplet", {"reduction": "max"}, weight=2.0),
    ]
    out = build_objective(configs)(embeddings, logit_scale=scale)
    # CLIP also reports the temperature it used (not a loss term: not in the total).
    assert set(out) == {"clip_loss", "triplet_loss", "triplet2_loss", "temperature", "loss"}
    expected = out["clip_loss"] + 0.5 * out["triplet_loss"] + 2.0 * out["triplet2_loss"]
    assert float(out["loss"]) == pytest.approx(float(expected))
    assert float(out["triplet2_loss"]) == pytest.approx(
        float(triplet_loss(embeddings["text"], embeddings["image"], reduction="max"))
    )
    single = build_objective([ObjectiveConfig("siglip")])
    assert isinstance(single, SigLipObjective)


def test_config_accepts_objectives_list_and_the_single_form(tmp_path):
    from jointspace.config import ExperimentConfig

    (tmp_path / "a.yaml").write_text("objective: {name: siglip, params: {init_bias: -5}}\n")
    config = ExperimentConfig.from_yaml(tmp_path / "a.yaml")
    assert [(o.name, o.params, o.weight) for o in config.objectives] == [
        ("siglip", {"init_bias": -5}, 1.0)
    ]
    config.to_yaml(tmp_path / "b.yaml")
    assert ExperimentConfig.from_yaml(tmp_path / "b.yaml") == config
    assert "objectives:" in (tmp_path / "b.yaml").read_text()
