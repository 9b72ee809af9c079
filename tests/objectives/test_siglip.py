"""SigLIP's scale and bias belong to the model: loss, training, saving, and old checkpoints."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from jointspace import fit, load
from jointspace.config import ExperimentConfig, ObjectiveConfig
from jointspace.models import build_model
from jointspace.objectives import SigLipObjective
from jointspace.objectives.combined import build_objective


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line]


LEGACY = Path(__file__).parent / "data" / "legacy_siglip_run"


def naive_siglip(a, b, scale, bias):
    total = 0.0
    for i in range(len(a)):
        for j in range(len(b)):
            z = 1.0 if i == j else -1.0
            logit = math.exp(scale) * float(a[i] @ b[j]) + bias
            total += math.log1p(math.exp(-z * logit))
    return total / len(a)


def siglip_config(**train):
    config = tiny_config(log_every=1, warmup_steps=1, **train)
    config.objectives = [ObjectiveConfig("siglip")]
    config.data.val_split = None
    return config


def test_siglip_uses_the_models_scale_and_bias():
    config = tiny_config()
    config.model.init_logit_bias = -3.0
    model = build_model(config.model, corpus=["a seven", "a two"])
    assert model.logit_bias is not None and model.logit_bias.item() == -3.0
    objective = SigLipObjective()
    assert list(objective.parameters()) == []  # it holds nothing of its own
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(6, 5, generator=g), dim=-1)
    b = F.normalize(torch.randn(6, 5, generator=g), dim=-1)
    out = objective(
        {"text": a, "image": b}, logit_scale=model.logit_scale, logit_bias=model.logit_bias
    )
    expected = naive_siglip(a.double(), b.double(), model.logit_scale.item(), -3.0)
    assert float(out["siglip_loss"]) == pytest.approx(expected, abs=1e-5)
    assert float(out["temperature"]) == pytest.approx(0.07, rel=1e-6)
    out["siglip_loss"].backward()
    assert model.logit_bias.grad is not None and model.logit_scale.grad is not None
    with pytest.raises(ValueError, match="logit_bias"):
        objective({"text": a, "image": b}, logit_scale=model.logit_scale)


def test_training_adds_and_trains_the_bias_and_logs_what_it_used(tmp_path, digits_manifest):
    result = fit(
        siglip_config(batch_size=256, max_steps=3), tmp_path / "run", manifest=digits_manifest
    )
    first = result.history[0]
    # Step 1 ran at the paper's start: scale 10 (temperature 0.1), bias −10.
    assert first["temperature"] == pytest.approx(0.1, rel=1e-6)
    assert first["logit_bias"] == -10.0
    assert result.history[-1]["logit_bias"] != -10.0  # the bias trains
    model = load(tmp_path / "run")
    assert model.config.init_logit_bias == -10.0
    assert float(model.logit_bias) != -10.0
    logged = [
        json.loads(line)
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n")
        if line
    ]
    assert [r["logit_bias"] for r in logged] == [r["logit_bias"] for r in result.history]


def test_a_model_with_a_bias_saves_and_loads_it(tmp_path):
    config = tiny_config()
    model = build_model(config.model, corpus=["a seven", "a two"])
    assert model.logit_bias is None and "logit_bias" not in model.state_dict()
    model.add_logit_bias(-4.0, init_scale=10.0)
    with torch.no_grad():
        model.logit_bias.add_(0.25)
    model.save(tmp_path / "m")
    again = load(tmp_path / "m")
    assert float(again.logit_bias) == -3.75
    assert float(again.logit_scale) == pytest.approx(math.log(10.0))
    assert again.config.init_logit_bias == -4.0


def test_clip_logs_the_clamped_temperature_it_used(tmp_path, digits_manifest):
    config = tiny_config(batch_size=256, max_steps=1, log_every=1)
    config.model.init_temperature = 0.001  # scale log 1000, above CLIP's clamp at log 100
    config.data.val_split = None
    result = fit(config, tmp_path / "run", manifest=digits_manifest)
    assert result.history[0]["temperature"] == pytest.approx(0.01, rel=1e-6)
    assert "logit_bias" not in result.history[0]


def test_combined_objectives_share_the_models_logits():
    objective = build_objective([ObjectiveConfig("clip"), ObjectiveConfig("siglip", weight=0.5)])
    g = torch.Generator().manual_seed(1)
    a = F.normalize(torch.randn(4, 3, generator=g), dim=-1)
    b = F.normalize(torch.randn(4, 3, generator=g), dim=-1)
    scale, bias = torch.tensor(math.log(200.0)), torch.tensor(-2.0)
    out = objective({"text": a, "image": b}, logit_scale=scale, logit_bias=bias)
    assert set(out) == {
        "clip_loss",
        "siglip_loss",
        "temperature",
        "temperature1",
        "logit_bias",
        "loss",
    }
    assert float(out["temperature"]) == pytest.approx(0.01)  # CLIP clamps
    assert float(out["temperature1"]) == pytest.approx(1 / 200.0)  # SigLIP does not
    assert float(out["loss"]) == pytest.approx(float(out["clip_loss"] + 0.5 * out["siglip_loss"]))


def test_an_old_checkpoint_with_the_bias_in_the_objective_resumes_exactly(
    tmp_path, digits_manifest
):
    # The fixture was written before issue 14 (make_legacy_siglip_run.py): SigLIP's scale and
    # bias are in objective.safetensors, the optimizer lists them after the model's parameters.
    old = tmp_path / "old"
    shutil.copytree(LEGACY, old)
    config = ExperimentConfig.from_yaml(old / "config.yaml")
    straight = fit(config, tmp_path / "straight", manifest=digits_manifest)
    old_log = read_log(old / "metrics.jsonl")
    # Today's code computes what the old code did for the first two steps (to float32 rounding:
    # a loss near 33 is resolved to 4e-6, and thread counts change the summation order)...
    assert [r["loss"] for r in straight.history[:2]] == pytest.approx(
        [r["loss"] for r in old_log], rel=1e-6
    )
    # ...and resuming the old checkpoint continues as the uninterrupted run (to float32 rounding:
    # the old code's weights differ from today's in the last bit; a lost or swapped optimizer
    # state for the scale or bias moves these by 1e-3 and more).
    rest = fit(config, old, manifest=digits_manifest, resume=True)
    assert [r["step"] for r in rest.history] == [3, 4]
    for key in ("loss", "temperature", "logit_bias"):
        assert [r[key] for r in rest.history] == pytest.approx(
            [r[key] for r in straight.history[2:]], rel=1e-6
        )
    resumed, fresh = load(old), load(tmp_path / "straight")
    assert float(resumed.logit_bias) == pytest.approx(float(fresh.logit_bias), rel=1e-6)
    assert float(resumed.logit_scale) == pytest.approx(float(fresh.logit_scale), rel=1e-6)
