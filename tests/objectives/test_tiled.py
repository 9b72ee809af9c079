"""Tiled CLIP and SigLIP equal the naive losses and their gradients, with and without duplicates.

Tolerance: 1e-5 absolute, and 1e-5 relative for the large sums (a 300-row SigLIP loss is ~180,
where one float32 step is 1.5e-5); both computations round differently in float32 only.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from jointspace import fit
from jointspace.config import ConfigError, ObjectiveConfig
from jointspace.objectives import (
    Positives,
    clip_loss,
    masks,
    positive_pairs,
    siglip_loss,
    tiled,
    tiled_clip_loss,
    tiled_siglip_loss,
)
from jointspace.objectives.combined import build_objective
from jointspace.registry import PartParamsError, build

# (B, block): several B, blocks of 1, 5, 64 and more than B (kept where the tiles stay few).
CASES = [
    (1, 1),
    (1, 64),
    (7, 1),
    (7, 5),
    (7, 64),
    (64, 5),
    (64, 64),
    (64, 100),
    (300, 5),
    (300, 64),
    (300, 512),
]


def close(got, expected):
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def batch(n, dim=16, seed=0, duplicates=True):
    """Normalised embeddings and group ids; with duplicates, rows share images and captions."""
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, dim, generator=g), dim=-1)
    b = F.normalize(torch.randn(n, dim, generator=g), dim=-1)
    rows = torch.arange(n)
    if not duplicates:
        return a, b, {"image": rows, "text": rows}
    image = rows // 3  # three captions per image (COCO-style)
    text = torch.where(rows % 4 == 1, 1, rows)  # every fourth caption is one repeated caption
    return a, b, {"image": image, "text": text}


def leaves(a, b, scale=math.log(1 / 0.07), bias=-3.0):
    return [
        a.clone().requires_grad_(),
        b.clone().requires_grad_(),
        torch.tensor(scale, requires_grad=True),
        torch.tensor(bias, requires_grad=True),
    ]


def value_and_grads(loss, inputs):
    return [loss.detach(), *torch.autograd.grad(loss, inputs, allow_unused=True)]


def assert_all_close(got, expected):
    for g, e in zip(got, expected, strict=True):
        if e is None:
            assert g is None or float(g.abs().max()) == 0.0
        else:
            close(g, e)


@pytest.mark.parametrize("duplicates", [False, True])
@pytest.mark.parametrize(("n", "block"), CASES)
def test_tiled_clip_equals_naive_loss_and_gradients(n, block, duplicates):
    a, b, groups = batch(n, duplicates=duplicates)
    naive_in, tiled_in = leaves(a, b)[:3], leaves(a, b)[:3]
    expected = value_and_grads(clip_loss(*naive_in, positive_pairs(groups)), naive_in)
    got = value_and_grads(tiled_clip_loss(*tiled_in, groups=groups, block=block), tiled_in)
    assert_all_close(got, expected)


@pytest.mark.parametrize("duplicates", [False, True])
@pytest.mark.parametrize(("n", "block"), CASES)
def test_tiled_siglip_equals_naive_loss_and_gradients(n, block, duplicates):
    a, b, groups = batch(n, duplicates=duplicates)
    naive_in, tiled_in = leaves(a, b), leaves(a, b)
    expected = value_and_grads(siglip_loss(*naive_in, positive_pairs(groups)), naive_in)
    got = value_and_grads(tiled_siglip_loss(*tiled_in, groups=groups, block=block), tiled_in)
    assert_all_close(got, expected)


def test_a_frozen_tower_and_no_grad_give_the_same_numbers():
    a, b, groups = batch(64)
    scale, bias = torch.tensor(2.6), torch.tensor(-3.0)
    dense = positive_pairs(groups)
    for naive, tiled_ in (
        (
            lambda x: clip_loss(x, b, scale, dense),
            lambda x: tiled_clip_loss(x, b, scale, dense, block=16),
        ),
        (
            lambda x: siglip_loss(x, b, scale, bias, dense),
            lambda x: tiled_siglip_loss(x, b, scale, bias, dense, block=16),
        ),
    ):
        x, y = a.clone().requires_grad_(), a.clone().requires_grad_()  # b (and the logits) frozen
        expected, got = naive(x), tiled_(y)
        close(got.detach(), expected.detach())
        close(*torch.autograd.grad(got, y), *torch.autograd.grad(expected, x))
        with torch.no_grad():
            close(tiled_(a), expected.detach())


@pytest.mark.parametrize("block", [16, 64])  # several tiles; one tile, whose scores are kept
def test_a_retained_graph_gives_the_same_gradients_twice(block):
    a, b, groups = batch(64)
    x = a.clone().requires_grad_()
    loss = tiled_clip_loss(x, b, torch.tensor(2.6), groups=groups, block=block)
    (first,) = torch.autograd.grad(loss, x, retain_graph=True)
    (second,) = torch.autograd.grad(loss, x)
    x_ = a.clone().requires_grad_()
    (expected,) = torch.autograd.grad(
        clip_loss(x_, b, torch.tensor(2.6), positive_pairs(groups)), x_
    )
    close(first, expected)
    close(second, expected)


def test_duplicates_change_the_loss_so_the_masks_are_exercised():
    a, b, groups = batch(64)
    scale, bias = torch.tensor(2.6), torch.tensor(-3.0)
    unique = {"text": torch.arange(64)}
    for fn in (
        lambda g: tiled_clip_loss(a, b, scale, groups=g, block=5),
        lambda g: tiled_siglip_loss(a, b, scale, bias, groups=g, block=5),
    ):
        assert abs(float(fn(groups)) - float(fn(unique))) > 1e-2


@pytest.mark.parametrize(("n", "block"), [(7, 1), (64, 5), (300, 64)])
def test_the_exact_path_equals_naive_too(monkeypatch, n, block):
    # SPREAD < 0 sends every tile through the per-row and per-column shifts.
    monkeypatch.setattr(tiled, "SPREAD", -1.0)
    a, b, groups = batch(n)
    naive_in, tiled_in = leaves(a, b)[:3], leaves(a, b)[:3]
    expected = value_and_grads(clip_loss(*naive_in, positive_pairs(groups)), naive_in)
    got = value_and_grads(tiled_clip_loss(*tiled_in, groups=groups, block=block), tiled_in)
    assert_all_close(got, expected)


def test_extreme_logits_stay_exact():
    # Norms up to 4 at CLIP's largest scale: logits span ±1600, far beyond one shared shift.
    a, b, groups = batch(64, seed=3)
    g = torch.Generator().manual_seed(4)
    a = a * (1 + 3 * torch.rand(64, 1, generator=g))
    b = b * (1 + 3 * torch.rand(64, 1, generator=g))
    naive_in, tiled_in = leaves(a, b, scale=10.0)[:3], leaves(a, b, scale=10.0)[:3]
    expected = value_and_grads(clip_loss(*naive_in, positive_pairs(groups)), naive_in)
    got = value_and_grads(tiled_clip_loss(*tiled_in, groups=groups, block=8), tiled_in)
    assert torch.isfinite(got[0]) and float(got[0]) > 10
    for g_, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g_, e, rtol=1e-5, atol=1e-4)  # logits of 1e3: ulp 6e-5
    assert float(got[3].abs()) == 0.0  # above the clamp: no gradient to the scale


def test_a_dense_positives_mask_gives_the_same_as_group_ids():
    a, b, groups = batch(64)
    scale, bias = torch.tensor(2.6), torch.tensor(-3.0)
    dense = positive_pairs(groups)
    close(tiled_clip_loss(a, b, scale, dense, block=5), tiled_clip_loss(a, b, scale, groups=groups))
    close(
        tiled_siglip_loss(a, b, scale, bias, dense, block=5),
        tiled_siglip_loss(a, b, scale, bias, groups=groups, block=5),
    )
    with pytest.raises(ValueError, match="not both"):
        tiled_clip_loss(a, b, scale, dense, groups=groups)


def test_the_autograd_graph_keeps_no_b_by_b_tensor():
    n, dim = 256, 16
    a, b, groups = batch(n, dim)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    inputs = leaves(a, b)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        clip = tiled_clip_loss(*inputs[:3], groups=groups, block=32)
        sig = tiled_siglip_loss(*inputs, groups=groups, block=32)
    (clip + sig).backward()
    assert max(sizes) <= n * dim  # inputs and per-row statistics only
    sizes.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        clip_loss(*inputs[:3], positive_pairs(groups))
    assert max(sizes) >= n * n  # the naive loss keeps its logits


def test_tiled_objectives_never_build_the_dense_mask(monkeypatch):
    def refuse(groups):
        raise AssertionError("a B×B mask was built")

    monkeypatch.setattr(masks, "positive_pairs", refuse)
    a, b, groups = batch(64)
    objective = build_objective(
        [ObjectiveConfig("clip", {"block": 16}), ObjectiveConfig("siglip", {"block": 16})]
    )
    out = objective(
        {"text": a, "image": b},
        logit_scale=torch.tensor(2.6),
        logit_bias=torch.tensor(-3.0),
        groups=groups,
    )
    assert torch.isfinite(out["loss"])
    with pytest.raises(AssertionError, match="B×B"):  # the naive path still builds it
        build("objective", "clip")(
            {"text": a, "image": b}, logit_scale=torch.tensor(2.6), groups=groups
        )


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_objective_modules_with_a_block_equal_the_naive_ones(name):
    a, b, groups = batch(64)
    c = F.normalize(a + b, dim=-1)
    groups = {**groups, "audio": torch.arange(64) // 2}

    def run(objective):
        x, y, z, scale, bias = (
            a.clone().requires_grad_(),
            b.clone().requires_grad_(),
            c.clone().requires_grad_(),
            torch.tensor(2.6, requires_grad=True),
            torch.tensor(-3.0, requires_grad=True),
        )
        out = objective(
            {"text": x, "image": y, "audio": z}, logit_scale=scale, logit_bias=bias, groups=groups
        )
        loss = out[f"{name}_loss"]
        return [
            loss.detach(),
            *torch.autograd.grad(loss, [x, y, z, scale, bias], allow_unused=True),
        ]

    naive, tiled_ = run(build("objective", name)), run(build("objective", name, block=16))
    assert_all_close(tiled_, naive)
    # groups and the dense mask they make are one and the same to the naive objective
    dense = build("objective", name)(
        {"text": a, "image": b, "audio": c},
        logit_scale=torch.tensor(2.6),
        logit_bias=torch.tensor(-3.0),
        positives=positive_pairs(groups),
    )
    close(dense[f"{name}_loss"], naive[0])


def test_bf16_autocast_inputs_are_scored_in_float32():
    a, b, groups = batch(64, seed=5)
    a16, b16 = a.bfloat16().requires_grad_(), b.bfloat16().requires_grad_()
    scale = torch.tensor(2.6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = tiled_clip_loss(a16 * 1, b16 * 1, scale, groups=groups, block=16)
    loss.backward()
    assert loss.dtype == torch.float32 and a16.grad.dtype == torch.bfloat16
    x, y = a16.detach().float().requires_grad_(), b16.detach().float().requires_grad_()
    expected = clip_loss(x, y, scale, positive_pairs(groups))  # float32, no autocast
    expected.backward()
    close(loss.detach(), expected.detach())
    close(a16.grad.float(), x.grad.bfloat16().float())


@pytest.mark.parametrize("bad", [0, -4, 2.5, True, "big"])
def test_a_bad_block_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="block"):
        build("objective", "clip", block=bad)
    with pytest.raises(ConfigError, match="block"):
        build("objective", "siglip", block=bad)
    with pytest.raises(PartParamsError, match="blocks"):
        build("objective", "clip", blocks=64)


def test_positives_need_one_source():
    with pytest.raises(ValueError, match="not both"):
        Positives()
    ids = {"text": torch.tensor([0, 0, 1])}
    positives = Positives(ids)
    assert len(positives) == 3
    assert positives.block(slice(0, 2), slice(1, 3)).tolist() == [[True, False], [True, False]]
    rows, cols = positives.partnered()
    assert rows.tolist() == cols.tolist() == [True, True, False]


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_training_with_a_block_gives_the_naive_loss_curve(tmp_path, digits_manifest, name):
    # batch 128 in tiles of 48: three row blocks, the last one short.
    losses = {}
    for block in (None, 48):
        config = tiny_config(batch_size=128, max_steps=4, log_every=1, warmup_steps=1)
        config.data.val_split = None
        params = {} if block is None else {"block": block}
        config.objectives = [ObjectiveConfig(name, params)]
        result = fit(config, tmp_path / f"run-{block}", manifest=digits_manifest)
        losses[block] = [r["loss"] for r in result.history]
    assert len(losses[None]) == 4
    assert losses[48] == pytest.approx(losses[None], rel=1e-5, abs=1e-5)
