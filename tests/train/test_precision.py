"""Mixed precision: fp16 is refused off a GPU; its loss scaler changes no update and resumes."""

import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config
from jointspace import fit
from jointspace.cli.main import app
from jointspace.config import ConfigError, ObjectiveConfig, TrainConfig
from jointspace.objectives.combined import build_objective
from jointspace.train import checkpoint as ckpt
from jointspace.train.precision import autocast, make_scaler, optimizer_step
from jointspace.train.step import forward_backward
from jointspace.train.trainer import Trainer
from tiny_steps import CHUNK, make_batch, tiny_model


def test_fp16_on_a_cpu_is_one_config_error_before_anything_is_written(tmp_path, digits_manifest):
    config = tiny_config(max_steps=2, precision="fp16", device="cpu")
    with pytest.raises(ConfigError) as err:
        fit(config, tmp_path / "run", manifest=digits_manifest)
    assert str(err.value) == (
        "train.precision: fp16 needs a CUDA GPU and this run is on cpu; "
        "use bf16, which runs on CPU and GPU"
    )
    assert not (tmp_path / "run").exists()


def test_fp16_through_the_cli_is_one_error_line(tmp_path, digits_manifest):
    config = tiny_config(max_steps=2, precision="fp16", device="cpu")
    config.to_yaml(tmp_path / "fp16.yaml")
    args = ["train", str(tmp_path / "fp16.yaml"), "--data", str(digits_manifest)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and result.output.count("error:") == 1
    assert "train.precision: fp16 needs a CUDA GPU" in result.output
    assert not (tmp_path / "run").exists()


def test_only_fp16_gets_a_scaler():
    assert make_scaler("fp32", torch.device("cpu")) is None
    assert make_scaler("bf16", torch.device("cpu")) is None
    with pytest.raises(ConfigError, match="use bf16"):
        Trainer(*_parts(), TrainConfig(precision="fp16", device="cpu"), "unused")


def _parts():
    objective = build_objective([ObjectiveConfig("clip")])
    return tiny_model(0.0, objective), objective


@pytest.mark.parametrize("chunk", [None, CHUNK])
def test_a_loss_scaler_gives_the_unscaled_update(chunk):
    # The scaler's path (scaled backward, unscale, clip, step) on the CPU, in fp32: with a
    # power-of-two scale the update is the plain one to rounding.
    updates = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**12)):
        model, objective = _parts()
        batch = make_batch(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        forward_backward(model, objective, batch, grad_cache_chunk=chunk, scaler=scaler)
        optimizer_step(optimizer, 0.5, scaler)
        updates.append({n: p.detach() - before[n] for n, p in model.named_parameters()})
    assert updates[1]["logit_scale"].abs() > 0
    for name, expected in updates[0].items():
        torch.testing.assert_close(updates[1][name], expected, rtol=1e-5, atol=1e-7, msg=name)


def test_a_step_with_inf_gradients_is_skipped_and_the_scale_backs_off():
    model, objective = _parts()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    before = model.logit_scale.detach().clone()
    forward_backward(model, objective, make_batch(model), scaler=scaler)
    model.logit_scale.grad.fill_(float("inf"))
    optimizer_step(optimizer, 1.0, scaler)
    assert torch.equal(model.logit_scale.detach(), before)
    assert scaler.get_scale() == 2.0**11


def test_the_scaler_state_is_saved_and_restored(tmp_path):
    model, objective = _parts()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)
    for _ in range(2):  # two good steps: the growth tracker counts toward the next doubling
        optimizer.zero_grad()
        forward_backward(model, objective, make_batch(model), scaler=scaler)
        optimizer_step(optimizer, 1.0, scaler)
    state = {"step": 2, "num_rows": 26, "total_steps": 4, **ckpt.scaler_state(scaler)}
    path = ckpt.save_checkpoint(tmp_path, model, objective, optimizer, state, torch.get_rng_state())
    fresh = torch.amp.GradScaler("cpu", growth_interval=3)
    loaded, _ = ckpt.load_checkpoint(path, model, objective, optimizer, fresh)
    assert (
        fresh.state_dict()
        == scaler.state_dict()
        == {
            "scale": 2.0**10,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": 3,
            "_growth_tracker": 2,
        }
    )
    assert "scaler" not in loaded  # the trainer's state stays as it was
    assert ckpt.scaler_state(None) == {}


def test_bf16_autocast_runs_the_towers_in_bf16_on_a_cpu():
    model, _ = _parts()
    batch = make_batch(model)
    with autocast(torch.device("cpu"), "bf16"):
        hidden = model.towers["image"].head(torch.randn(2, 16))
    assert hidden.dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert model(batch.inputs)["text"].dtype == torch.float32


def test_a_resumed_run_continues_with_the_scalers_state(tmp_path, digits_manifest, monkeypatch):
    # fp16 needs a GPU; its scaler's bookkeeping is the same on the CPU, so the trainer runs
    # with a CPU scaler here: the scale doubles every 2 steps, and a resume must keep counting.
    import json

    from jointspace.train import trainer

    scalers = []

    def cpu_scaler(precision, device):
        scalers.append(torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=2))
        return scalers[-1]

    monkeypatch.setattr(trainer, "make_scaler", cpu_scaler)
    config = tiny_config(batch_size=128, max_steps=7, checkpoint_every=3, warmup_steps=2)
    config.data.val_split = None
    straight = fit(config, tmp_path / "straight", manifest=digits_manifest)

    def stop(step, record):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, tmp_path / "run", manifest=digits_manifest, callbacks=[stop])
    state = json.loads((tmp_path / "run/checkpoints/step-0000003/trainer_state.json").read_text())
    assert state["scaler"]["scale"] == 2.0**9 and state["scaler"]["_growth_tracker"] == 1
    rest = fit(config, tmp_path / "run", manifest=digits_manifest, resume=True)
    assert scalers[-1].state_dict() == scalers[0].state_dict()
    assert scalers[0].get_scale() == 2.0**11  # 7 good steps
    losses = [r["loss"] for r in straight.history[3:]]
    assert [r["loss"] for r in rest.history] == pytest.approx(losses, abs=1e-6)
