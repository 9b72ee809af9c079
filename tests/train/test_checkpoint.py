"""Checkpoints under damage: full disk, killed writers, tampered files, extended and slim runs."""

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_config
from jointspace import fit, load
from jointspace.config import ConfigError
from jointspace.errors import ArtifactError, DiskFullError, JointspaceError
from jointspace.train import checkpoint as ckpt
from jointspace.train.optim import lr_factor


class Interrupt(Exception):
    pass


def stop_at(at):
    def callback(step, record):
        if step == at:
            raise Interrupt()

    return callback


def small_config(**train):
    config = tiny_config(batch_size=256, checkpoint_every=4, warmup_steps=2, **train)
    config.data.val_split = None
    return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits_manifest):
    """An uninterrupted 12-step run and one stopped after step 8 (checkpoints 4 and 8)."""
    root = tmp_path_factory.mktemp("runs")
    config = small_config(max_steps=12)
    straight = fit(config, root / "straight", manifest=digits_manifest)
    with pytest.raises(Interrupt):
        fit(config, root / "stopped", manifest=digits_manifest, callbacks=[stop_at(8)])
    return config, straight, root / "stopped"


def copy_run(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs[2], run)
    return run


def losses(result):
    return [r["loss"] for r in result.history]


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def nan_weights(path):
    tensors = load_file(str(path))
    name = sorted(tensors)[0]
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(path))


DAMAGE = {
    "truncated-model": lambda c: truncate(c / "model.safetensors"),
    "truncated-optimizer": lambda c: truncate(c / "optimizer.safetensors"),
    "broken-state-json": lambda c: (c / "trainer_state.json").write_text('{"step": 8,'),
    "state-json-list": lambda c: (c / "trainer_state.json").write_text("[1, 2]"),
    "garbage-tokenizer": lambda c: (c / "tokenizer.json").write_text("not a tokenizer"),
    "nan-weights": lambda c: nan_weights(c / "model.safetensors"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_resume_falls_back_to_the_newest_intact_checkpoint(
    runs, tmp_path, digits_manifest, caplog, damage
):
    config, straight, _ = runs
    run = copy_run(runs, tmp_path)
    DAMAGE[damage](run / "checkpoints" / "step-0000008")
    # A write killed mid-line leaves half a record: it must not block the resume.
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 9, "loss": 0.')
    with caplog.at_level("WARNING", logger="jointspace"):
        rest = fit(config, run, manifest=digits_manifest, resume=True)
    assert "skipping damaged checkpoint" in caplog.text and "step-0000008" in caplog.text
    assert [r["step"] for r in rest.history] == list(range(5, 13))
    assert losses(rest) == pytest.approx(losses(straight)[4:], abs=1e-6)
    assert (run / "checkpoints" / "damaged-step-0000008").is_dir()  # kept, never resumed
    logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged)) and logged[-1] == 12


def test_a_full_disk_at_a_checkpoint_keeps_the_previous_one(
    runs, tmp_path, digits_manifest, monkeypatch
):
    config, straight, _ = runs
    real_write = os.write

    def full_at_step_8(fd, data):
        if "step-0000008" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_at_step_8)
    run = tmp_path / "run"
    with pytest.raises(DiskFullError) as caught:
        fit(config, run, manifest=digits_manifest)
    monkeypatch.undo()
    message = str(caught.value)
    assert message.startswith("no space left on device writing ")
    assert (
        message.count("checkpoints/step-0000008") == 1 and "previous version is intact" in message
    )
    assert caught.value.__suppress_context__  # one error, no chained traceback
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-0000004"]
    ckpt.check_checkpoint(run / "checkpoints" / "step-0000004")
    rest = fit(config, run, manifest=digits_manifest, resume=True)  # space freed
    assert losses(rest) == pytest.approx(losses(straight)[4:], abs=1e-6)


def test_leftovers_of_a_killed_run_are_removed_and_others_kept(runs, tmp_path, digits_manifest):
    config, straight, _ = runs
    run = copy_run(runs, tmp_path)
    leftovers = [
        run / "checkpoints" / ".step-0000012.k1ll3d00.tmp",
        run / ".model.abcdefgh.tmp",
    ]
    for directory in leftovers:
        directory.mkdir()
        (directory / "model.safetensors").write_bytes(b"half")
    (run / ".metrics.csv.zz99yy88.tmp").write_text("half")
    mine = [run / "notes.tmp", run / ".notes.txt", run / "checkpoints" / "keep.tmp"]
    for path in mine:
        path.write_text("the user's")
    rest = fit(config, run, manifest=digits_manifest, resume=True)
    assert losses(rest) == pytest.approx(losses(straight)[8:], abs=1e-6)
    assert not any(p.exists() for p in leftovers)
    assert not (run / ".metrics.csv.zz99yy88.tmp").exists()
    assert all(p.read_text() == "the user's" for p in mine)


def test_a_second_training_into_the_same_run_is_refused(runs, tmp_path, digits_manifest):
    config, _, _ = runs
    run = copy_run(runs, tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(run / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = sorted(p.name for p in (run / "checkpoints").iterdir())
        with pytest.raises(JointspaceError, match="in use by another training process"):
            fit(config, run, manifest=digits_manifest, resume=True)
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_finished_run_is_extended_by_more_epochs(tmp_path, digits_manifest):
    config = small_config(epochs=1)
    per = fit(config, tmp_path / "run", manifest=digits_manifest).steps  # one epoch
    config.train.epochs = 2
    more = fit(config, tmp_path / "run", manifest=digits_manifest, resume=True)
    assert [r["step"] for r in more.history] == list(range(per + 1, 2 * per + 1))
    # The schedule is recomputed for the new total from where the run stands.
    ratio = config.train.min_lr_ratio
    expected = [
        config.train.lr * lr_factor(s - 1, 2 * per, 2, ratio) for s in range(per + 1, 2 * per + 1)
    ]
    assert [r["lr"] for r in more.history] == pytest.approx(expected)
    state = ckpt.read_state(ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints"))
    assert (state["step"], state["total_steps"], state["epochs"]) == (2 * per, 2 * per, 2)
    config.train.epochs = 1
    with pytest.raises(ConfigError, match=f"at step {2 * per}, past the {per} steps asked for"):
        fit(config, tmp_path / "run", manifest=digits_manifest, resume=True)


def test_tampered_model_files_are_one_clear_error(runs, tmp_path):
    run = copy_run(runs, tmp_path)
    model = tmp_path / "model"
    fit_dir = runs[1].out_dir / "model"
    cases = {
        "truncated weights": lambda m: truncate(m / "model.safetensors"),
        "garbage tokenizer": lambda m: (m / "tokenizer.json").write_text("{{{"),
        "config.json list": lambda m: (m / "config.json").write_text("[1, 2]"),
        "broken config.json": lambda m: (m / "config.json").write_text('{"format": '),
        "NaN weights": lambda m: nan_weights(m / "model.safetensors"),
    }
    for name, damage in cases.items():
        shutil.rmtree(model, ignore_errors=True)
        shutil.copytree(fit_dir, model)
        damage(model)
        with pytest.raises(ArtifactError, match=str(model)) as caught:
            load(model)
        assert "\n" not in str(caught.value), name
    assert run.is_dir()


def dir_bytes(path):
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_checkpoints_of_a_locked_pretrained_tower_are_slim_and_resume_exactly(
    tmp_path, digits_manifest
):
    from jointspace.config import ExperimentConfig, builtin_config

    config = ExperimentConfig.from_yaml(builtin_config("digits-minilm"))
    config.model.towers["image"].params = dict(image_size=16, widths=[16, 32])
    config.data.val_split = None
    config.train.batch_size, config.train.max_steps, config.train.warmup_steps = 256, 6, 2
    config.train.checkpoint_every, config.train.progress = 3, False
    straight = fit(config, tmp_path / "straight", manifest=digits_manifest)
    with pytest.raises(Interrupt):
        fit(config, tmp_path / "run", manifest=digits_manifest, callbacks=[stop_at(4)])
    step3 = tmp_path / "run" / "checkpoints" / "step-0000003"
    full = dir_bytes(tmp_path / "straight" / "model")  # self-contained: MiniLM included
    assert full > 80e6 and dir_bytes(step3) < 0.05 * full
    frozen = json.loads((step3 / "frozen.json").read_text())["towers"]
    assert list(frozen) == ["text"] and len(frozen["text"]["keys"]) > 90
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-0000004")  # resume from step 3
    rest = fit(config, tmp_path / "run", manifest=digits_manifest, resume=True)
    assert losses(rest) == pytest.approx(losses(straight)[3:], abs=1e-6)
    a = load(tmp_path / "straight").encode(["a handwritten 7"], "text")
    b = load(tmp_path / "run").encode(["a handwritten 7"], "text")
    assert abs(a - b).max() < 1e-5
    # A source that no longer gives the same frozen weights is refused, not trained on.
    latest = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    (latest / "frozen.json").write_text(
        json.dumps({"towers": {"text": {**frozen["text"], "fingerprint": "0" * 32}}})
    )
    config.train.max_steps = 8
    with pytest.raises(ArtifactError, match="frozen text tower's weights differ"):
        fit(config, tmp_path / "run", manifest=digits_manifest, resume=True)
    assert latest.is_dir()  # not set aside as damaged: the checkpoint is fine


@pytest.mark.parametrize("seed", [0, 1])
def test_kill_9_at_a_random_point_then_resume_reaches_the_uninterrupted_run(
    runs, tmp_path, digits_manifest, seed
):
    import random
    import signal
    import time

    config, straight, _ = runs
    config = small_config(max_steps=12)
    config.train.checkpoint_every = 1  # a checkpoint write in flight at most moments
    config.to_yaml(tmp_path / "c.yaml")
    run = tmp_path / "run"
    script = (
        "import sys\nfrom jointspace import fit\nfrom jointspace.config import ExperimentConfig\n"
        f"fit(ExperimentConfig.from_yaml({str(tmp_path / 'c.yaml')!r}), {str(run)!r}, "
        f"manifest={str(digits_manifest)!r})\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "step-0000002").exists() and child.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(random.Random(seed).uniform(0.0, 0.6))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    rest = fit(config, run, manifest=digits_manifest, resume=True)
    if rest.history:  # the kill may land after the last step
        start = rest.history[0]["step"]
        assert losses(rest) == pytest.approx(losses(straight)[start - 1 :], abs=1e-6)
    a = load(straight.out_dir).encode(["a handwritten 7"], "text")
    assert abs(load(run).encode(["a handwritten 7"], "text") - a).max() < 1e-5
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged)) and logged[-1] == 12
