"""Gradient cache: a chunked step gives the full-batch step's losses and gradients."""

import pytest
import torch
from torch import nn

from conftest import tiny_config
from jointspace import fit
from jointspace.config import ModelConfig, ObjectiveConfig, TowerConfig
from jointspace.data.collate import Batch
from jointspace.models.build import build_model
from jointspace.models.joint import JointModel
from jointspace.objectives.combined import build_objective
from jointspace.objectives.masks import positive_pairs
from jointspace.train.gradcache import cached_forward_backward, rows
from jointspace.train.step import forward_backward, score, total_loss
from saved_memory import SavedBytes
from tiny_steps import CHUNK, B, DictTower, make_batch, tiny_model


def gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def run(step, model, objective, batch, **kwargs):
    """Loss, gradients and the RNG state afterwards of one step from a fixed RNG state."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    losses = step(model, objective, batch, **kwargs)
    return losses["loss"].item(), gradients(model), torch.get_rng_state()


def chunked_with_graph(model, objective, batch, *, chunk, pooled=frozenset()):
    """The reference for dropout: each chunk embedded once with a graph (the memory grad cache
    saves), in grad cache's RNG order, then one loss over all of them."""
    parts = [
        model(rows(batch.inputs, s, s + chunk, len(batch)), pooled=pooled)
        for s in range(0, len(batch), chunk)
    ]
    embeddings = {m: torch.cat([p[m] for p in parts]) for m in parts[0]}
    loss = total_loss(score(model, objective, embeddings, batch))
    loss.backward()
    return {"loss": loss}


def assert_same_gradients(expected, got, rel=5e-6):
    assert expected.keys() == got.keys()
    for name, grad in expected.items():
        # Relative to the parameter's gradient norm: float32 sums in another order.
        assert (got[name] - grad).norm() <= rel * grad.norm() + 1e-12, name


OBJECTIVES = {
    "clip": [ObjectiveConfig("clip")],
    "siglip": [ObjectiveConfig("siglip")],
    "triplet": [ObjectiveConfig("triplet", {"miner": "semi_hard"})],
    "dcca": [ObjectiveConfig("dcca", {"top_k": 4})],
    "combined": [ObjectiveConfig("clip"), ObjectiveConfig("triplet", weight=0.5)],
}


@pytest.mark.parametrize("name", OBJECTIVES)
def test_a_cached_step_equals_the_full_batch_step(name):
    objective = build_objective(OBJECTIVES[name])
    model = tiny_model(0.0, objective)
    batch = make_batch(model)
    loss, expected, rng = run(forward_backward, model, objective, batch)
    cached, got, rng_after = run(forward_backward, model, objective, batch, grad_cache_chunk=CHUNK)
    assert cached == pytest.approx(loss, rel=1e-6)
    assert_same_gradients(expected, got)
    assert torch.equal(rng, rng_after)  # the step leaves the RNG where the full step does
    # The temperature (and SigLIP's bias) get their gradients from the loss on all rows.
    assert {"logit_scale", "logit_bias"} & got.keys() == {
        "clip": {"logit_scale"},
        "siglip": {"logit_scale", "logit_bias"},
        "combined": {"logit_scale"},
    }.get(name, set())


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_dropout_masks_are_replayed_per_chunk(name):
    objective = build_objective(OBJECTIVES[name])
    model = tiny_model(0.2, objective)
    batch = make_batch(model)
    loss, expected, rng = run(chunked_with_graph, model, objective, batch, chunk=CHUNK)
    cached, got, rng_after = run(cached_forward_backward, model, objective, batch, chunk=CHUNK)
    assert cached == pytest.approx(loss, rel=1e-6)
    assert_same_gradients(expected, got)
    assert torch.equal(rng, rng_after)
    # Dropout is live: other masks (one full-batch draw) give clearly other gradients.
    _, other, _ = run(forward_backward, model, objective, batch)
    assert (
        other["towers.text.head.weight"] - expected["towers.text.head.weight"]
    ).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_a_frozen_tower_reading_cached_features(name):
    objective = build_objective(OBJECTIVES[name])
    model = tiny_model(0.1, objective, lock_image=True)
    batch = make_batch(model)
    with torch.no_grad():
        batch.inputs["image"] = model.tower("image").pooled(batch.inputs["image"])
    pooled = frozenset({"image"})
    loss, expected, _ = run(chunked_with_graph, model, objective, batch, chunk=CHUNK, pooled=pooled)
    cached, got, _ = run(
        forward_backward, model, objective, batch, pooled=pooled, grad_cache_chunk=CHUNK
    )
    assert cached == pytest.approx(loss, rel=1e-6)
    assert_same_gradients(expected, got)
    image = [n for n in got if n.startswith("towers.image.")]
    assert image and all(n.startswith("towers.image.head.") for n in image)  # only the head


def test_dict_inputs_are_sliced_by_row_and_shared_entries_kept():
    torch.manual_seed(0)
    image = build_model(
        ModelConfig(
            embed_dim=8, towers={"image": TowerConfig("cnn", {"image_size": 16, "widths": [8]})}
        )
    )
    image_tower = image.tower("image")
    model = JointModel({"text": DictTower(8), "image": image_tower}, ModelConfig(embed_dim=8))
    objective = build_objective([ObjectiveConfig("clip")])
    ids = torch.randint(0, 30, (B, 5), generator=torch.Generator().manual_seed(0))
    inputs = {"text": {"ids": ids, "weights": torch.rand(30)}, "image": torch.randn(B, 3, 16, 16)}
    batch = Batch(inputs, {"text": torch.arange(B), "image": torch.arange(B)}, torch.arange(B))
    part = rows(batch.inputs, 8, 16, B)
    assert torch.equal(part["text"]["ids"], ids[8:16]) and part["text"]["weights"].shape == (30,)
    loss, expected, _ = run(forward_backward, model, objective, batch)
    cached, got, _ = run(forward_backward, model, objective, batch, grad_cache_chunk=CHUNK)
    assert cached == pytest.approx(loss, rel=1e-6)
    assert_same_gradients(expected, got)


def test_batch_norm_statistics_move_once_per_chunk():
    # Running statistics (BatchNorm) are not doubled by the graph-less first pass.
    torch.manual_seed(0)
    norm = nn.BatchNorm1d(8)
    model = JointModel({"text": DictTower(8), "image": DictTower(8)}, ModelConfig(embed_dim=8))
    model.towers["image"].head = nn.Sequential(nn.Linear(12, 8), norm)
    ids = torch.randint(0, 30, (B, 5), generator=torch.Generator().manual_seed(0))
    inputs = {m: {"ids": ids, "weights": torch.rand(30)} for m in ("text", "image")}
    batch = Batch(inputs, {m: torch.arange(B) for m in inputs}, torch.arange(B))
    objective = build_objective([ObjectiveConfig("clip")])
    cached_forward_backward(model, objective, batch, chunk=CHUNK)
    assert norm.num_batches_tracked.item() == 4
    expected = torch.zeros(8)
    for s in range(0, B, CHUNK):  # momentum updates, one per chunk, from the replay alone
        features = model.towers["image"].pooled(rows(inputs["image"], s, s + CHUNK, B))
        chunk_mean = model.towers["image"].head[0](features).mean(0)
        expected = 0.9 * expected + 0.1 * chunk_mean
    assert torch.allclose(norm.running_mean, expected.detach(), atol=1e-6)


def test_a_diverged_loss_is_returned_without_backward():
    objective = build_objective([ObjectiveConfig("clip")])
    model = tiny_model(0.0, objective)
    batch = make_batch(model)
    with torch.no_grad():
        model.logit_scale.fill_(float("nan"))
    losses = cached_forward_backward(model, objective, batch, chunk=CHUNK)
    assert not torch.isfinite(losses["loss"])
    assert all(p.grad is None for p in model.parameters())


def test_positives_of_the_whole_batch_are_used():
    # Duplicates in different chunks still count as positives: the loss sees one batch.
    objective = build_objective([ObjectiveConfig("clip")])
    model = tiny_model(0.0, objective)
    batch = make_batch(model)
    assert positive_pairs(batch.groups)[0, 20]  # rows 0 and 20 share a caption, chunks 0 and 2
    with torch.no_grad():
        embeddings = model(batch.inputs)
    expected = score(model, objective, embeddings, batch)["clip_loss"]
    got = cached_forward_backward(model, objective, batch, chunk=CHUNK)["clip_loss"]
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_training_run_has_the_same_loss_curve_with_grad_cache(tmp_path, digits_manifest):
    curves = []
    for chunk in (None, 48):
        config = tiny_config(batch_size=200, max_steps=6, warmup_steps=2, grad_cache_chunk=chunk)
        config.model.towers["text"].params["dropout"] = 0.0
        config.data.val_split = None
        result = fit(config, tmp_path / f"run-{chunk}", manifest=digits_manifest)
        curves.append([r["loss"] for r in result.history])
    assert len(curves[0]) == 6
    assert curves[1] == pytest.approx(curves[0], rel=1e-5)
    assert curves[0][-1] < curves[0][0]  # it trained


def test_activations_held_for_backward_are_one_chunks():
    # 96 rows in chunks of 12: the towers' saved activations peak at about 1/8 of a full step's
    # (measured 0.135: one chunk plus the loss's B×B terms).
    objective = build_objective([ObjectiveConfig("clip")])
    model = tiny_model(0.1, objective)
    batch = make_batch(model, 96)
    peaks = {}
    for chunk in (None, 12):
        model.zero_grad(set_to_none=True)
        with SavedBytes() as probe:
            forward_backward(model, objective, batch, grad_cache_chunk=chunk)
        peaks[chunk] = probe.peak
    assert peaks[12] < 0.2 * peaks[None]
