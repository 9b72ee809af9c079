"""Bad command lines: each ends in exit code 1 (one `error:` line) or 2 (usage), no traceback."""

import shutil

import pytest
from typer.testing import CliRunner

from conftest import tiny_config
from jointspace.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def setting(tmp_path_factory, digits_manifest):
    """A tiny trained run plus the bad files the cases point at."""
    root = tmp_path_factory.mktemp("robust-cli")
    config = root / "tiny.yaml"
    tiny = tiny_config(batch_size=256, max_steps=3)
    tiny.data.val_split = None
    tiny.to_yaml(config)
    run = root / "run"
    args = ["train", str(config), "--data", str(digits_manifest), "--out", str(run)]
    assert runner.invoke(app, args).exit_code == 0
    (root / "empty").mkdir()
    (root / "garbage.yaml").write_text("train: [1, 2\n")
    (root / "no-image.csv").write_text("id,text\n1,hello\n")
    (root / "blank.csv").write_text("")
    (root / "missing-file.csv").write_text("id,text,image\n1,a seven,nowhere.png\n")
    (root / "existing.parquet").write_text("keep me")
    shutil.copytree(run / "model", root / "bare-model")
    shutil.copytree(run, root / "broken-run")
    (root / "broken-run" / "config.yaml").write_text("train: {epochs: many}\n")
    return root


CASES = {
    # (args with {root} and {run} placeholders, expected exit code)
    "missing config": (["train", "{root}/nope.yaml", "--out", "{root}/o1"], 1),
    "config not YAML": (["train", "{root}/garbage.yaml", "--out", "{root}/o2"], 1),
    "no config, no resume": (["train", "--out", "{root}/o3"], 1),
    "--force without --resume": (["train", "{root}/tiny.yaml", "--out", "{root}/o4", "--force"], 1),
    "missing manifest": (
        ["train", "{root}/tiny.yaml", "--data", "{root}/no.csv", "--out", "{root}/o6"],
        1,
    ),
    "unknown builtin": (
        ["train", "{root}/tiny.yaml", "--data", "builtin:nope", "--out", "{root}/o7"],
        1,
    ),
    "manifest row with missing image": (
        ["train", "{root}/tiny.yaml", "--data", "{root}/missing-file.csv", "--out", "{root}/o5"],
        1,
    ),
    "--out is a file": (["train", "{root}/tiny.yaml", "--out", "{root}/blank.csv"], 1),
    "new run into a run": (["train", "{root}/tiny.yaml", "--out", "{run}"], 1),
    "resume a missing run": (["train", "--resume", "--out", "{root}/nothing"], 1),
    "resume a dir that is not a run": (["train", "--resume", "--out", "{root}/empty"], 1),
    "epochs 0": (["train", "{root}/tiny.yaml", "--epochs", "0"], 2),
    "max-steps not a number": (["train", "{root}/tiny.yaml", "--max-steps", "abc"], 2),
    "eval a dir that is not a run": (["eval", "{root}/empty"], 1),
    "eval a missing dir": (["eval", "{root}/nowhere"], 1),
    "eval a run with a broken config.yaml": (["eval", "{root}/broken-run"], 1),
    "bare model without --data": (["eval", "{root}/bare-model"], 1),
    "unknown split": (["eval", "{run}", "--split", "nosuch"], 1),
    "unknown relevance": (["eval", "{run}", "--relevance", "bogus"], 1),
    "manifest without image column": (["eval", "{run}", "--data", "{root}/no-image.csv"], 1),
    "empty manifest file": (["eval", "{run}", "--data", "{root}/blank.csv"], 1),
    "--json is a directory": (["eval", "{run}", "--json", "{root}/empty"], 1),
    "zeroshot unknown split": (["zeroshot", "{run}", "--split", "nope"], 1),
    "search k 0": (["search", "{run}", "--query", "a seven", "--k", "0"], 2),
    "search k negative": (["search", "{run}", "--query", "a seven", "--k", "-3"], 2),
    "search a modality the data lacks": (
        ["search", "{run}", "--query", "x", "--target", "audio"],
        1,
    ),
    "embed a modality the data lacks": (
        ["embed", "{run}", "--modality", "audio", "--out", "{root}/a.parquet"],
        1,
    ),
    "embed over an existing file": (["embed", "{run}", "--out", "{root}/existing.parquet"], 1),
    "embed batch size 0": (["embed", "{run}", "--out", "{root}/b.parquet", "--batch-size", "0"], 2),
    "report unknown map": (["report", "{run}", "--map", "bogus", "--out", "{root}/rep"], 1),
    "report into a foreign dir": (["report", "{run}", "--out", "{root}/broken-run"], 1),
    "rerank a bare model without --data": (["rerank", "{root}/bare-model"], 1),
    "demo unknown dataset": (["demo", "--dataset", "nope", "--scratch", "--out", "{root}/d"], 1),
    "demo into a run": (["demo", "--scratch", "--out", "{run}"], 1),
    "compare unknown objective": (
        ["compare", "{root}/tiny.yaml", "--objectives", "nope", "--out", "{root}/c"],
        1,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_invocation_is_one_line(setting, name):
    template, expected = CASES[name]
    args = [a.format(root=setting, run=setting / "run") for a in template]
    result = runner.invoke(app, args, terminal_width=1000)
    assert result.exit_code == expected, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    if expected == 1:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output


def test_refused_invocations_changed_nothing(setting):
    assert (setting / "existing.parquet").read_text() == "keep me"
    assert not (setting / "rep").exists() and not (setting / "d").exists()
    assert not (setting / "c").exists()
    assert not any((setting / name).exists() for name in ("o1", "o2", "o3", "o4", "o5", "o6", "o7"))
    assert sorted(p.name for p in (setting / "empty").iterdir()) == []
