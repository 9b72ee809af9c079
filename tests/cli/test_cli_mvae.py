"""``jointspace mvae`` and ``jointspace generate`` on the command line: outputs, refusals and
one-line errors."""

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from jointspace.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-mvae")
    args = ["mvae", "configs/mvae-digits.yaml", "--out", str(root / "run")]
    result = runner.invoke(app, [*args, "--set", "train.epochs=2", "--set", "train.progress=false"])
    assert result.exit_code == 0, result.output
    return root, args, result.output


def test_mvae_prints_the_val_and_test_losses_it_saved(cli_run):
    root, _, output = cli_run
    metrics = json.loads((root / "run" / "metrics.json").read_text())
    for split in ("val", "test"):
        assert f"{metrics[split]['mvae_loss']:.2f}" in output
    assert "mvae_text_loss" in output and "mvae_image_loss" in output
    assert "epochs: 2" in (root / "run" / "config.yaml").read_text()  # the --set is recorded


def test_mvae_refuses_an_existing_run_or_a_foreign_directory(cli_run, tmp_path):
    root, args, _ = cli_run
    before = (root / "run" / "mvae.safetensors").read_bytes()
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "pass --force" in result.output
    assert (root / "run" / "mvae.safetensors").read_bytes() == before
    (tmp_path / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["mvae", "configs/mvae-digits.yaml", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "not written by `jointspace mvae`" in result.output
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_generate_writes_an_image_a_grid_and_prints_words(cli_run, tmp_path):
    root, _, _ = cli_run
    run = str(root / "run")
    one = tmp_path / "seven.png"
    base = ["generate", run, "--from", "text", "--to", "image", "--text", "a handwritten seven"]
    result = runner.invoke(app, [*base, "--out", str(one)])
    assert result.exit_code == 0, result.output
    assert Image.open(one).size == (96, 96)  # one 8×8 image, scaled up
    grid = tmp_path / "grid.png"
    result = runner.invoke(app, [*base, "--out", str(grid), "--samples", "4"])
    assert result.exit_code == 0, result.output
    assert Image.open(grid).size == (4 * 48 + 3 * 2, 48)  # four 48-pixel cells, 3 gaps
    again = runner.invoke(app, [*base, "--out", str(one)])
    assert again.exit_code == 1 and "--force" in again.output
    seven = tmp_path / "seven-in.png"
    Image.new("L", (8, 8), 0).save(seven)
    result = runner.invoke(
        app, ["generate", run, "--from", "image", "--image", str(seven), "--to", "text",
              "--top-k", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    vocab = json.loads((root / "run" / "vocab.json").read_text())["words"]
    listed = [line.split("│")[1].strip() for line in result.output.splitlines()
              if line.count("│") == 3]  # fmt: skip
    assert len(listed) == 3 and set(listed) <= set(vocab)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--from", "audio", "--audio", "x.wav", "--to", "image", "--out", "x.png"],
         "no 'audio' modality; it has image, text"),
        (["--from", "smell", "--to", "image", "--out", "x.png"], "--from 'smell': unknown"),
        (["--from", "text", "--to", "image", "--out", "x.png"], "--from text needs its input"),
        (["--from", "text", "--text", "zebra", "--to", "image", "--out", "x.png"],
         "none of its words is in the vocabulary"),
        (["--from", "text", "--text", "seven", "--to", "image"], "give --out FILE.png"),
        (["--from", "text", "--text", "seven", "--image", "a.png", "--to", "text"],
         "--image given, but --from is text"),
    ],
)  # fmt: skip
def test_generate_bad_inputs_are_one_line(cli_run, tmp_path, monkeypatch, extra, message):
    root, _, _ = cli_run
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["generate", str(root / "run"), *extra])
    assert result.exit_code == 1, result.output
    assert message in result.output and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "x.png").exists()


def test_generate_refuses_a_damaged_run_in_one_line(cli_run, tmp_path):
    import shutil

    root, _, _ = cli_run
    copy = tmp_path / "run"
    shutil.copytree(root / "run", copy)
    (copy / "mvae.safetensors").write_bytes(b"garbage")
    args = ["generate", str(copy), "--from", "text", "--text", "seven", "--to", "text"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "do not match the fingerprint" in result.output
    assert result.output.count("\n") == 1


def test_mvae_force_replaces_an_earlier_run(cli_run, tmp_path):
    import shutil

    root, args, _ = cli_run
    copy = tmp_path / "run"
    shutil.copytree(root / "run", copy)
    args = [*args[:-1], str(copy), "--force", "--set", "train.epochs=1"]
    result = runner.invoke(app, [*args, "--set", "train.progress=false"])
    assert result.exit_code == 0, result.output
    assert len(json.loads((copy / "metrics.json").read_text())["history"]) == 1
