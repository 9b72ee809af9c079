import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import tiny_config
from jointspace.cli import app
from jointspace.data import read_manifest

runner = CliRunner()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, digits_manifest):
    run = tmp_path_factory.mktemp("cli") / "run"
    config_path = run.parent / "tiny.yaml"
    tiny_config(batch_size=128, epochs=1).to_yaml(config_path)
    result = runner.invoke(
        app, ["train", str(config_path), "--data", str(digits_manifest), "--out", str(run)]
    )
    assert result.exit_code == 0, result.output
    return run


def test_train_writes_a_loadable_run(trained_run):
    assert (trained_run / "model" / "model.safetensors").is_file()
    assert (trained_run / "config.yaml").is_file()
    assert json.loads((trained_run / "metrics.jsonl").read_text().splitlines()[-1])["step"] > 0


def test_training_log_is_mirrored_to_csv_one_row_per_step(trained_run):
    import pandas as pd

    from jointspace.train.logs import read_log

    table = pd.read_csv(trained_run / "metrics.csv")
    records = read_log(trained_run / "metrics.jsonl")
    assert table["step"].tolist() == sorted({r["step"] for r in records})
    evaluated = [r for r in records if "eval" in r]
    last = table.set_index("step").loc[evaluated[-1]["step"]]
    assert last["val/primary"] == pytest.approx(evaluated[-1]["eval"]["primary"])
    assert last["loss"] == pytest.approx(
        next(r["loss"] for r in records if "loss" in r and r["step"] == evaluated[-1]["step"])
    )


def test_eval_prints_table_and_writes_json(trained_run, digits_manifest, tmp_path):
    out = tmp_path / "m.json"
    args = ["eval", str(trained_run), "--data", str(digits_manifest), "--json", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "text → image" in result.output and "relevance=label" in result.output
    metrics = json.loads(out.read_text())
    assert 0 <= metrics["text_to_image/mAP"] <= 1 and metrics["primary"] == metrics["mean_recall"]


def test_embed_writes_parquet_of_unique_images(trained_run, digits_manifest, tmp_path):
    out = tmp_path / "e.parquet"
    args = ["embed", str(trained_run), "--data", str(digits_manifest), "--split", "test"]
    result = runner.invoke(app, [*args, "--modality", "image", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.num_rows == len(set(table.column("image").to_pylist()))
    lines = digits_manifest.read_text().splitlines()[1:]
    rows = [r for r in lines if r.endswith(",test")]
    assert table.num_rows * 3 == len(rows)
    vectors = table.column("embedding").to_pylist()
    assert len(vectors[0]) == 64


def test_search_lists_k_results(trained_run, digits_manifest):
    args = ["search", str(trained_run), "--data", str(digits_manifest), "--split", "test"]
    result = runner.invoke(app, [*args, "--query", "a handwritten seven", "--k", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.count("images/") == 3


def test_bad_manifest_is_one_clear_line(tmp_path, trained_run):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,text,image\n1,a seven,missing.png\n")
    result = runner.invoke(app, ["eval", str(trained_run), "--data", str(manifest), "--split", ""])
    assert result.exit_code == 1
    assert "m.csv, row 1, column 'image'" in result.output
    assert "Traceback" not in result.output


def test_missing_config_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "config file not found" in result.output


def test_demo_trains_evaluates_and_searches(tmp_path, monkeypatch):
    monkeypatch.setenv("JOINTSPACE_CACHE", str(tmp_path / "cache"))
    args = ["demo", "--out", str(tmp_path / "demo"), "--epochs", "1", "--scratch"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "digits on" in result.output  # --scratch defaults to the digits dataset
    assert "text → image" in result.output and "chance" in result.output
    assert "'a handwritten seven' → top-5 labels" in result.output
    assert (tmp_path / "demo" / "model" / "model.safetensors").is_file()


def test_skip_bad_reports_and_skips(tmp_path, trained_run, digits_manifest, caplog):
    lines = digits_manifest.read_text().splitlines()
    test_rows = [line for line in lines[1:] if line.endswith(",test")][:30]
    image_dir = digits_manifest.parent / "images"
    manifest = tmp_path / "m.csv"
    bad = "9999-0,images/9999.png,a handwritten 1,one,test"
    manifest.write_text("\n".join([lines[0], *test_rows, bad]) + "\n")
    (tmp_path / "images").symlink_to(image_dir)
    args = ["eval", str(trained_run), "--data", str(manifest)]
    assert runner.invoke(app, args).exit_code == 1
    result = runner.invoke(app, [*args, "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert "skipped 1 of 31 rows" in caplog.text


def test_demo_serve_indexes_the_dataset_and_serves_it(trained_run, digits_manifest, monkeypatch):
    import uvicorn
    from fastapi.testclient import TestClient

    from jointspace.demo import serve_demo

    monkeypatch.setenv("JOINTSPACE_CACHE", str(digits_manifest.parents[2]))
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    serve_demo(trained_run, port=8123)
    assert served["port"] == 8123 and served["host"] == "127.0.0.1"
    health = TestClient(served["app"]).get("/health").json()
    assert health["items"] == len(set(read_manifest(digits_manifest).column("image")))
