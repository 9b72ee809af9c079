"""``jointspace classify`` and ``jointspace predict`` on the command line."""

import json

import pytest
from typer.testing import CliRunner

from classify_helpers import write_xor_manifest, xor_config
from jointspace.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-classify")
    manifest = write_xor_manifest(root / "data")
    config = root / "classify.yaml"
    xor_config(root / "elsewhere.csv", "concat").to_yaml(config)  # --data replaces the manifest
    args = ["classify", str(config), "--data", str(manifest), "--out", str(root / "run")]
    result = runner.invoke(app, [*args, "--set", "train.epochs=25"])
    assert result.exit_code == 0, result.output
    return root, args, manifest, result.output


def test_classify_prints_val_and_test_scores_and_groups(cli_run):
    root, _, manifest, output = cli_run
    metrics = json.loads((root / "run" / "metrics.json").read_text())
    assert set(metrics) == {"val", "test"} and metrics["test"]["accuracy"] >= 0.85
    for name in ("accuracy", "macro-F1", "accuracy per group", "red", "blue"):
        assert name in output
    for split in ("val", "test"):
        assert f"{100 * metrics[split]['accuracy']:.1f}" in output
        assert f"{100 * metrics[split]['macro_f1']:.1f}" in output
        for group in metrics[split]["per_group"].values():
            assert f"{100 * group['accuracy']:.1f}" in output
    recorded = (root / "run" / "config.yaml").read_text()
    assert str(manifest) in recorded and "train" in recorded  # the data it really used


def test_classify_refuses_an_existing_run_without_force(cli_run):
    root, args, _, _ = cli_run
    before = (root / "run" / "classifier.json").read_text()
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "pass --force" in result.output
    assert (root / "run" / "classifier.json").read_text() == before
    (root / "run" / "notes.txt").write_text("mine")
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code == 1 and "notes.txt" in result.output
    (root / "run" / "notes.txt").unlink()


def test_classify_force_replaces_an_earlier_classifier(cli_run, tmp_path):
    import shutil

    root, args, _, _ = cli_run
    copy = tmp_path / "run"
    shutil.copytree(root / "run", copy)
    (copy / "metrics.json").write_text("{}")
    args = [*args[:-1], str(copy), "--force", "--set", "train.epochs=2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((copy / "metrics.json").read_text())["test"]["rows"] == 60


def test_predict_prints_the_answer_and_what_it_used(cli_run):
    from jointspace.runs.classify import Classifier

    root, _, manifest, _ = cli_run
    image = manifest.parent / "images" / "0300.png"
    args = ["predict", str(root / "run"), "--text", "big hot round", "--image", str(image)]
    expected = Classifier.open(root / "run").predict({"text": "big hot round", "image": image})
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"answer: {expected.label}" in result.output and "used: image, text" in result.output
    assert f"{expected.scores[0][1]:.4f}" in result.output
    result = runner.invoke(app, [*args[:4], "--json", "--top-k", "1"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["used"] == ["text"] and len(answer["scores"]) == 1
    assert answer["label"] == answer["scores"][0]["label"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--audio", "x.wav"], "this classifier takes image, text; it has no 'audio' input"),
        ([], "nothing to classify: give at least one of image, text"),
    ],
)
def test_predict_errors_are_one_line(cli_run, extra, message):
    root = cli_run[0]
    result = runner.invoke(app, ["predict", str(root / "run"), *extra])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {message}"


def test_predict_on_a_directory_without_a_classifier(tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path), "--text", "hot"])
    assert result.exit_code == 1 and "no classifier at" in result.output
