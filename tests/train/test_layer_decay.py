"""train.layer_decay: each parameter's lr is lr × decay^(its depth from the top of its tower)."""

import pytest

from jointspace.config import ConfigError, ModelConfig, TowerConfig, TrainConfig
from jointspace.models import build_model
from jointspace.objectives.contrastive import ClipObjective
from jointspace.train.optim import build_optimizer, set_lr


def lrs_by_name(model, optimizer):
    lr = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    return {n: lr[id(p)] for n, p in model.named_parameters() if id(p) in lr}


def test_lr_decays_by_depth_from_the_top(hf_clip_dirs):
    model = build_model(ModelConfig(pretrained=str(hf_clip_dirs["clip"])))
    optimizer = build_optimizer([model, ClipObjective()], TrainConfig(lr=1.0, layer_decay=0.5))
    set_lr(optimizer, 0.1)
    lrs = lrs_by_name(model, optimizer)
    assert len(lrs) == sum(1 for _ in model.parameters())  # every parameter, once
    text = "towers.text.text_model."
    expected = {
        "towers.text.head.weight": 0.1,  # the projection: depth 0
        f"{text}encoder.layers.1.mlp.fc1.weight": 0.05,  # last layer: depth 1
        f"{text}encoder.layers.0.mlp.fc1.weight": 0.025,  # first of 2 layers: depth 2
        f"{text}embeddings.token_embedding.weight": 0.0125,  # below the first layer: depth 3
        f"{text}final_layer_norm.weight": 0.05,  # after the last layer: its depth
        "towers.image.vision_model.embeddings.patch_embedding.weight": 0.0125,
        "towers.image.vision_model.pre_layrnorm.weight": 0.0125,
        "towers.image.vision_model.encoder.layers.1.self_attn.q_proj.weight": 0.05,
        "towers.image.head.weight": 0.1,
        "logit_scale": 0.1,
    }
    for name, lr in expected.items():
        assert lrs[name] == pytest.approx(lr, rel=1e-12), name
    decays = {g["weight_decay"] for g in optimizer.param_groups}
    assert decays == {0.1, 0.0}  # weight decay grouping is kept within each depth


def test_without_layer_decay_the_groups_are_unchanged(hf_clip_dirs):
    model = build_model(ModelConfig(pretrained=str(hf_clip_dirs["clip"])))
    optimizer = build_optimizer([model], TrainConfig())
    set_lr(optimizer, 0.3)
    assert len(optimizer.param_groups) == 2
    assert {g["lr"] for g in optimizer.param_groups} == {0.3}


def test_locked_layers_are_left_out_and_unlocked_ones_decay(hf_clip_dirs):
    towers = {"text": TowerConfig("hf_clip_text", lock=True, unlock_last=1)}
    model = build_model(ModelConfig(pretrained=str(hf_clip_dirs["clip"]), towers=towers))
    optimizer = build_optimizer([model], TrainConfig(layer_decay=0.5))
    set_lr(optimizer, 1.0)
    lrs = lrs_by_name(model, optimizer)
    text = {n: lr for n, lr in lrs.items() if n.startswith("towers.text.")}
    assert set(text.values()) == {1.0, 0.5}  # the head, and the one unlocked layer
    assert all(".layers.1." in n or n.endswith("head.weight") for n in text)


def test_layer_decay_is_checked():
    from jointspace.config import from_dict

    with pytest.raises(ConfigError, match=r"train\.layer_decay: must be at most 1"):
        from_dict(TrainConfig, {"layer_decay": 1.5}, "train")
    with pytest.raises(ConfigError, match="greater than 0"):
        from_dict(TrainConfig, {"layer_decay": 0}, "train")
