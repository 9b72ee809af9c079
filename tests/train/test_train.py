import json
import shutil

import pytest
import torch

from conftest import tiny_config
from jointspace import evaluate_model, fit, load, load_manifest
from jointspace.evaluate import chance_retrieval


class Interrupt(Exception):
    pass


def interrupt_at(step_to_fail):
    def callback(step, record):
        if step == step_to_fail:
            raise Interrupt()

    return callback


def straight_and_interrupted(tmp_path, manifest, config, at):
    """One uninterrupted run, and one stopped by an exception after step ``at``."""
    config.data.val_split = None
    straight = fit(config, tmp_path / "straight", manifest=manifest)
    with pytest.raises(Interrupt):
        fit(config, tmp_path / "resumed", manifest=manifest, callbacks=[interrupt_at(at)])
    return straight, tmp_path / "resumed"


def test_resume_reproduces_the_uninterrupted_loss_curve(tmp_path, digits_manifest):
    # batch 256 → 14 steps per epoch, so the interruption (step 17) resumes mid-epoch 2;
    # text dropout and image augmentation make RNG restoration matter.
    config = tiny_config(batch_size=256, max_steps=22, checkpoint_every=5, warmup_steps=3)
    straight, run = straight_and_interrupted(tmp_path, digits_manifest, config, at=17)
    assert (run / "checkpoints" / "step-0000017").is_dir()
    rest = fit(config, run, manifest=digits_manifest, resume=True)
    expected = [r["loss"] for r in straight.history[17:]]
    assert [r["step"] for r in rest.history] == list(range(18, 23))
    assert [r["loss"] for r in rest.history] == pytest.approx(expected, abs=1e-6)
    a = load(tmp_path / "straight").encode(["a handwritten 7"], "text")
    b = load(run).encode(["a handwritten 7"], "text")
    assert abs(a - b).max() < 1e-5
    logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged))  # no step logged twice after the resume


def test_resume_from_a_periodic_checkpoint(tmp_path, digits_manifest):
    # A run killed hard (no chance to save) leaves only its periodic checkpoints.
    config = tiny_config(batch_size=128, max_steps=12, checkpoint_every=4, warmup_steps=2)
    straight, run = straight_and_interrupted(tmp_path, digits_manifest, config, at=10)
    shutil.rmtree(run / "checkpoints" / "step-0000010")
    rest = fit(config, run, manifest=digits_manifest, resume=True)
    assert rest.history[0]["step"] == 9
    expected = [r["loss"] for r in straight.history[8:]]
    assert [r["loss"] for r in rest.history] == pytest.approx(expected, abs=1e-6)


def test_fresh_run_refuses_a_directory_with_checkpoints(tmp_path, digits_manifest):
    config = tiny_config(batch_size=128, max_steps=2)
    config.data.val_split = None
    fit(config, tmp_path / "run", manifest=digits_manifest)
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        fit(config, tmp_path / "run", manifest=digits_manifest)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        fit(config, tmp_path / "empty", manifest=digits_manifest, resume=True)


def test_short_digits_run_lifts_retrieval_far_above_chance(tmp_path, digits_manifest):
    config = tiny_config(epochs=4, batch_size=128)
    result = fit(config, tmp_path / "run", manifest=digits_manifest)
    assert result.best is not None and len(result.evals) == 4
    test = load_manifest(digits_manifest, ["text", "image"], split="test")
    metrics = evaluate_model(load(tmp_path / "run"), test, config.eval)
    chance = chance_retrieval(test, relevance="label")
    assert chance["text_to_image/mAP"] < 0.15 and chance["image_to_text/R@1"] < 0.15
    assert metrics["text_to_image/mAP"] > 0.5
    assert metrics["image_to_text/R@1"] > 0.6
    losses = [r["loss"] for r in result.history]
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_bf16_autocast_trains(tmp_path, digits_manifest):
    config = tiny_config(batch_size=64, max_steps=3, precision="bf16")
    config.data.val_split = None
    result = fit(config, tmp_path / "run", manifest=digits_manifest)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)


def test_emoji_held_out_subgroups_are_retrieved_above_chance(tmp_path_factory):
    from jointspace import build_dataset
    from jointspace.config import ExperimentConfig, builtin_config

    manifest = build_dataset("emoji", root=tmp_path_factory.mktemp("emoji"))
    config = ExperimentConfig.from_yaml(builtin_config("emoji"))
    config.model.towers["text"].params |= dict(width=32, depth=1, heads=2)
    config.model.towers["image"].params = dict(image_size=24, widths=[16, 32])
    config.train.epochs, config.train.progress = 3, False
    config.data.val_split = None
    run = fit(config, tmp_path_factory.mktemp("run"), manifest=manifest)
    held_out = load_manifest(manifest, ["text", "image"], split="zeroshot")
    metrics = evaluate_model(load(run.out_dir), held_out, config.eval)
    chance = chance_retrieval(held_out, relevance="pairs")
    assert metrics["text_to_image/R@10"] > 2.5 * chance["text_to_image/R@10"]
    assert metrics["text_to_image/mAP"] > 2 * chance["text_to_image/mAP"]
