"""``--set`` on the command line: every command that reads a config takes it; a run records it."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from conftest import tiny_config
from jointspace.cli import app
from jointspace.config import ExperimentConfig

runner = CliRunner()
COMMANDS = [
    ["train"],
    ["compare"],
    ["demo"],
    ["eval"],
    ["zeroshot"],
    ["report"],
    ["rerank"],
    ["embed"],
    ["search"],
    ["serve"],
    ["export"],
    ["index", "build"],
    ["mvae"],
    ["index", "search"],
]
SETS = ["--set", "train.lr=4e-3", "--set", "train.batch_size=256", "--set", "data.val_split="]


@pytest.fixture(scope="module")
def set_run(tmp_path_factory, digits_manifest):
    """A run trained for 2 steps with --set overrides on top of its YAML config."""
    root = tmp_path_factory.mktemp("overrides")
    tiny_config(batch_size=128, max_steps=2).to_yaml(root / "tiny.yaml")
    args = ["train", str(root / "tiny.yaml"), "--data", str(digits_manifest)]
    result = runner.invoke(app, [*args, "--out", str(root / "run"), *SETS])
    assert result.exit_code == 0, result.output
    return root


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_that_reads_a_config_takes_set(command):
    result = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0 and "--set" in result.output and "KEY.PATH=VALUE" in result.output


def test_train_records_its_overrides_in_the_runs_config(set_run):
    recorded = ExperimentConfig.from_yaml(set_run / "run" / "config.yaml")
    assert recorded.train.lr == 0.004 and recorded.train.batch_size == 256
    assert recorded.data.val_split is None
    assert recorded.train.max_steps == 2  # from the YAML file: what --set left alone stays
    steps = [json.loads(x) for x in (set_run / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1]["step"] == 2


def test_resume_applies_set_to_the_recorded_config_and_records_it(set_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(set_run / "run", run)
    result = runner.invoke(
        app, ["train", "--out", str(run), "--resume", "--set", "train.max_steps=4"]
    )
    assert result.exit_code == 0, result.output
    recorded = ExperimentConfig.from_yaml(run / "config.yaml")
    assert recorded.train.max_steps == 4 and recorded.train.lr == 0.004  # earlier --set kept
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 4


def test_resume_with_the_same_config_and_overrides_is_no_change(set_run, tmp_path, digits_manifest):
    run = tmp_path / "run"
    shutil.copytree(set_run / "run", run)
    args = ["train", str(set_run / "tiny.yaml"), "--out", str(run), "--resume"]
    args += ["--data", str(digits_manifest)]
    differs = runner.invoke(app, args, terminal_width=400)  # CONFIG without the overrides
    text = " ".join(differs.output.split())
    assert differs.exit_code == 1 and "train.lr: 0.004 recorded, 0.002 in" in text
    result = runner.invoke(app, [*args, *SETS, "--set", "train.max_steps=3"])
    assert result.exit_code == 0, result.output
    assert ExperimentConfig.from_yaml(run / "config.yaml").train.max_steps == 3


def test_a_bad_override_is_one_line_and_trains_nothing(set_run, tmp_path):
    args = ["train", str(set_run / "tiny.yaml"), "--out", str(tmp_path / "run")]
    result = runner.invoke(app, [*args, "--set", "train.lr=fast"], terminal_width=400)
    assert result.exit_code == 1
    assert "--set train.lr=fast: train.lr: expected float, got 'fast'" in result.output
    assert not (tmp_path / "run").exists()


def test_set_on_a_run_changes_its_config_for_that_command_only(set_run, tmp_path):
    before = (set_run / "run" / "config.yaml").read_bytes()
    out = tmp_path / "m.json"
    args = ["eval", str(set_run / "run"), "--split", "test", "--json", str(out)]
    result = runner.invoke(app, [*args, "--set", "eval.ks=[2, 7]"])
    assert result.exit_code == 0, result.output
    recalls = sorted(k for k in json.loads(out.read_text()) if k.startswith("text_to_image/R@"))
    assert recalls == ["text_to_image/R@2", "text_to_image/R@7"]
    assert (set_run / "run" / "config.yaml").read_bytes() == before
    wrong = runner.invoke(app, [*args, "--force", "--set", "eval.kss=[2]"], terminal_width=400)
    assert wrong.exit_code == 1 and "--set eval.kss=[2]: unknown key 'eval.kss'" in wrong.output


def test_compare_records_overrides_in_each_runs_config(tmp_path, digits_manifest):
    tiny_config(batch_size=128, max_steps=1).to_yaml(tmp_path / "tiny.yaml")
    args = ["compare", str(tmp_path / "tiny.yaml"), "--objectives", "clip"]
    args += ["--data", str(digits_manifest), "--out", str(tmp_path / "cmp")]
    result = runner.invoke(app, [*args, "--set", "train.lr=5e-4", "--set", "eval.batch_size=64"])
    assert result.exit_code == 0, result.output
    recorded = ExperimentConfig.from_yaml(tmp_path / "cmp" / "clip" / "config.yaml")
    assert recorded.train.lr == 0.0005 and recorded.eval.batch_size == 64


def test_demo_applies_overrides_and_refuses_a_bad_one_before_building(tmp_path, monkeypatch):
    import jointspace.runs.demo as demo_module

    built = []
    monkeypatch.setattr(demo_module, "build_dataset", lambda name: built.append(name) or tmp_path)
    plan = demo_module.plan_demo("digits", False, None, ["train.lr=2e-3", "train.epochs=3"])
    assert plan.config.train.lr == 0.002 and plan.config.train.epochs == 3 and built == ["digits"]
    result = runner.invoke(
        app, ["demo", "--out", str(tmp_path / "d"), "--scratch", "--set", "train.lrr=1"]
    )
    assert result.exit_code == 1 and "--set train.lrr=1: unknown key" in result.output
    assert built == ["digits"] and not (tmp_path / "d").exists()
