"""Activation checkpointing: the same losses and gradients, fewer activations held."""

import copy

import pytest
import torch

from jointspace.config import ConfigError, ModelConfig, ObjectiveConfig, TowerConfig
from jointspace.encoders import base
from jointspace.models.build import build_model
from jointspace.objectives.combined import build_objective
from jointspace.train.step import forward_backward
from saved_memory import SavedBytes
from tiny_steps import CORPUS, DictTower, make_batch


def transformer_model(dropout: float = 0.2, unlock_last: int | None = None):
    torch.manual_seed(0)
    text = dict(width=16, depth=3, heads=2, max_len=8, vocab_size=60, dropout=dropout)
    image = dict(image_size=16, patch_size=4, width=16, depth=3, heads=2, dropout=dropout)
    locked = dict(lock=True, unlock_last=unlock_last) if unlock_last is not None else {}
    towers = {
        "text": TowerConfig("transformer", text, **locked),
        "image": TowerConfig("vit", image),
    }
    return build_model(ModelConfig(embed_dim=8, towers=towers), corpus=CORPUS).train()


def step(model, batch, *, checkpointing: bool):
    for tower in model.towers.values():
        tower.checkpoint_layers(checkpointing)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    with SavedBytes() as probe:
        loss = forward_backward(model, build_objective([ObjectiveConfig("clip")]), batch)["loss"]
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads, probe.peak, torch.get_rng_state()


def assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-6, atol=1e-9, msg=name)


def test_checkpointed_layers_give_the_same_loss_and_gradients_with_dropout():
    model = transformer_model(dropout=0.2)
    batch = make_batch(model)
    loss, grads, peak, rng = step(model, batch, checkpointing=False)
    loss_ckpt, grads_ckpt, peak_ckpt, rng_ckpt = step(model, batch, checkpointing=True)
    assert loss_ckpt == loss  # the forward is the same computation
    assert_same(grads, grads_ckpt)  # recomputed with the forward's dropout masks
    assert torch.equal(rng, rng_ckpt)  # and the recomputation draws nothing from the RNG
    assert peak_ckpt < 0.5 * peak  # layer activations are recomputed, not held
    # Dropout is live: another RNG state gives other gradients.
    torch.manual_seed(8)
    model.zero_grad(set_to_none=True)
    forward_backward(model, build_objective([ObjectiveConfig("clip")]), batch)
    other = model.towers["text"].head.weight.grad
    assert (other - grads["towers.text.head.weight"]).abs().max() > 1e-3


def test_frozen_layers_and_inference_run_plain(monkeypatch):
    calls = []
    original = base.checkpoint
    monkeypatch.setattr(base, "checkpoint", lambda *a, **k: calls.append(1) or original(*a, **k))
    model = transformer_model(unlock_last=1)  # text: layers 0, 1 frozen, layer 2 trains
    batch = make_batch(model)
    loss, grads, _, _ = step(model, batch, checkpointing=False)
    loss_ckpt, grads_ckpt, _, _ = step(model, batch, checkpointing=True)
    assert len(calls) == 1 + 3  # the text tower's unlocked layer, the image tower's three
    assert loss_ckpt == loss
    assert_same(grads, grads_ckpt)
    with torch.no_grad():
        model(batch.inputs)
    model.eval()
    model(batch.inputs)
    assert len(calls) == 4


def test_switching_off_and_copying_keep_weights_and_names():
    model = transformer_model()
    names = list(model.state_dict())
    for tower in model.towers.values():
        tower.checkpoint_layers()
    assert list(model.state_dict()) == names
    twin = copy.deepcopy(model)  # e.g. an EMA copy: its layers checkpoint themselves
    layer = twin.towers["text"].layers()[0]
    assert layer.forward.args[0] is layer
    for tower in model.towers.values():
        tower.checkpoint_layers(False)
    assert all("forward" not in layer.__dict__ for layer in model.towers["text"].layers())


def test_a_tower_without_layers_is_named():
    with pytest.raises(ConfigError, match=r"train.activation_checkpointing: the DictTower tower"):
        DictTower(8).checkpoint_layers()
    DictTower(8).checkpoint_layers(False)  # off: nothing to do


def test_a_pretrained_tower_checkpoints_its_unlocked_layers(monkeypatch):
    # MiniLM's last two layers train, with attention dropout: checkpointing changes nothing.
    calls = []
    original = base.checkpoint
    monkeypatch.setattr(base, "checkpoint", lambda *a, **k: calls.append(1) or original(*a, **k))
    torch.manual_seed(0)
    image = TowerConfig("cnn", dict(image_size=16, widths=[8, 16]), lock=True)
    text = TowerConfig("hf_text", dict(path="all-MiniLM-L6-v2", max_len=8), unlock_last=2)
    model = build_model(ModelConfig(embed_dim=8, towers={"text": text, "image": image})).train()
    tower = model.towers["text"]
    batch = make_batch(model, 6)
    loss, grads, _, _ = step(model, batch, checkpointing=False)
    loss_ckpt, grads_ckpt, _, _ = step(model, batch, checkpointing=True)
    assert "forward" in tower.layers()[5].__dict__
    assert len(calls) == 2  # MiniLM's layers 4 and 5; the locked CNN's stages run plain
    assert loss_ckpt == loss
    assert_same(grads, grads_ckpt)
    assert any(".layer.5." in n for n in grads) and not any(".layer.3." in n for n in grads)
