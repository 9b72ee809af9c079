import json
import shutil

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
    assert metrics["primary"] == metrics["mean_recall"]
    for direction in ("text_to_image", "image_to_text"):  # one epoch clears 3.4x chance mAP
        assert metrics[f"{direction}/mAP"] > 2 * metrics[f"{direction}/chance_mAP"], metrics


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
    from fastapi.testclient import TestClient

    from jointspace.cli.demo import serve_demo
    from jointspace.serve import listen

    monkeypatch.setenv("JOINTSPACE_CACHE", str(digits_manifest.parents[2]))
    served = {}
    monkeypatch.setattr(listen, "run_on", lambda sock, app: served.update(app=app, sock=sock))
    serve_demo(trained_run, port=0)  # port 0: any free port; the socket is bound before indexing
    assert served["sock"].getsockname()[0] == "127.0.0.1"
    served["sock"].close()
    health = TestClient(served["app"]).get("/health").json()
    assert health["items"] == len(set(read_manifest(digits_manifest).column("image")))


def test_demo_serve_on_a_busy_port_fails_before_indexing(trained_run, tmp_path):
    import socket

    from jointspace.cli.demo import serve_demo
    from jointspace.errors import JointspaceError

    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("index"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(JointspaceError, match=f"port {busy.getsockname()[1]} .* in use"):
            serve_demo(run, port=busy.getsockname()[1])
    assert not (run / "index").exists()  # refused before minutes of indexing


# --- issue 13: nothing lost, --data recorded, one-line errors ---------------------------------


def _tree(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_demo_refuses_a_directory_it_did_not_create(tmp_path, trained_run):
    import shutil

    copy = tmp_path / "copy-of-run"
    shutil.copytree(trained_run, copy)
    (copy / "notes.txt").write_text("what I tried\n")
    before = _tree(copy)
    result = runner.invoke(app, ["demo", "--out", str(copy), "--epochs", "1", "--scratch"])
    assert result.exit_code == 1
    assert "was not written by `jointspace demo`" in result.output
    assert _tree(copy) == before  # refused: nothing changed, notes and run intact
    forced = runner.invoke(app, ["demo", "--out", str(copy), "--scratch", "--force"])
    assert forced.exit_code == 1 and _tree(copy) == before  # --force never takes a foreign dir


def test_demo_help_says_what_it_replaces():
    result = runner.invoke(app, ["demo", "--help"], terminal_width=200)
    text = " ".join(result.output.split())
    assert "--force" in text and "did not write" in text


def _other_config(tmp_path):
    path = tmp_path / "other.yaml"
    tiny_config(batch_size=64, epochs=12).to_yaml(path)
    return path


def test_train_into_a_run_with_checkpoints_writes_nothing(tmp_path, trained_run, digits_manifest):
    before = (trained_run / "config.yaml").read_bytes()
    args = ["train", str(_other_config(tmp_path)), "--data", str(digits_manifest)]
    result = runner.invoke(app, [*args, "--out", str(trained_run)])
    assert result.exit_code == 1 and "--resume" in result.output
    assert (trained_run / "config.yaml").read_bytes() == before  # epochs/batch not overwritten


def test_resume_reads_the_runs_own_config(trained_run):
    before = (trained_run / "config.yaml").read_bytes()
    result = runner.invoke(app, ["train", "--out", str(trained_run), "--resume"])
    assert result.exit_code == 0, result.output
    assert (trained_run / "config.yaml").read_bytes() == before


def test_resume_with_a_different_config_shows_the_fields(tmp_path, trained_run):
    before = (trained_run / "config.yaml").read_bytes()
    args = ["train", str(_other_config(tmp_path)), "--out", str(trained_run), "--resume"]
    result = runner.invoke(app, args, terminal_width=400)
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "train.batch_size: 128 recorded, 64 in" in text
    assert "train.epochs: 1 recorded, 12 in" in text and "--force" in text
    assert (trained_run / "config.yaml").read_bytes() == before


def test_failed_resume_leaves_the_recorded_config(tmp_path, trained_run, digits_manifest):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("index"))
    before = (run / "config.yaml").read_bytes()
    smaller = tmp_path / "m.csv"
    lines = digits_manifest.read_text().splitlines()
    smaller.write_text("\n".join(lines[:2000]) + "\n")
    (tmp_path / "images").symlink_to(digits_manifest.parent / "images")
    result = runner.invoke(app, ["train", "--out", str(run), "--resume", "--data", str(smaller)])
    assert result.exit_code == 1  # other data: the checkpoint does not fit it
    assert (run / "config.yaml").read_bytes() == before


def test_resume_extends_a_run_by_more_epochs(tmp_path, trained_run):
    import shutil

    from jointspace.config import ExperimentConfig

    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("index"))
    steps = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    result = runner.invoke(app, ["train", "--out", str(run), "--resume", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert ExperimentConfig.from_yaml(run / "config.yaml").train.epochs == 2
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert last == 2 * steps


def test_train_records_the_manifest_it_was_given(trained_run, digits_manifest):
    from jointspace.config import ExperimentConfig

    recorded = ExperimentConfig.from_yaml(trained_run / "config.yaml").data.manifest
    assert recorded == str(digits_manifest.resolve())


def test_commands_default_data_to_the_runs_manifest(trained_run, tmp_path):
    result = runner.invoke(app, ["eval", str(trained_run), "--split", "test"])
    assert result.exit_code == 0, result.output
    assert "text → image" in result.output
    args = ["search", str(trained_run), "--query", "a handwritten seven", "--k", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("images/") == 2


def test_a_bare_model_without_data_asks_for_data(trained_run, tmp_path):
    import shutil

    shutil.copytree(trained_run / "model", tmp_path / "model")
    result = runner.invoke(app, ["eval", str(tmp_path / "model")])
    assert result.exit_code == 1
    assert "records no manifest" in result.output and "--data" in result.output


def test_existing_outputs_are_refused_unless_forced(trained_run, tmp_path):
    out = tmp_path / "m.json"
    out.write_text("mine\n")
    args = ["eval", str(trained_run), "--json", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "--force" in result.output
    assert out.read_text() == "mine\n"
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert "text_to_image/mAP" in json.loads(out.read_text())


def test_report_refuses_a_directory_it_did_not_write(trained_run, tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "thesis.tex").write_text("chapter 1\n")
    for extra in ([], ["--force"]):
        result = runner.invoke(app, ["report", str(trained_run), "--out", str(folder), *extra])
        assert result.exit_code == 1, result.output
        assert [p.name for p in folder.iterdir()] == ["thesis.tex"]


def test_compare_refuses_a_directory_it_did_not_write(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    config = tmp_path / "c.yaml"
    tiny_config(epochs=1).to_yaml(config)
    result = runner.invoke(
        app, ["compare", str(config), "--objectives", "clip", "--out", str(folder)]
    )
    assert result.exit_code == 1 and "was not written by `jointspace compare`" in result.output
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


def test_rerank_keeps_an_existing_matcher_without_force(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("index"))
    (run / "model" / "matcher").mkdir()
    (run / "model" / "matcher" / "config.json").write_text("{}")
    result = runner.invoke(app, ["rerank", str(run)])
    assert result.exit_code == 1 and "--force" in result.output
    assert (run / "model" / "matcher" / "config.json").read_text() == "{}"


def test_embed_shows_progress_and_resumes_finished_batches(
    trained_run, tmp_path, monkeypatch, caplog
):
    import logging

    import jointspace.models.embedding as embed_module  # every manifest batch goes through it

    out = tmp_path / "e.parquet"
    args = ["embed", str(trained_run), "--split", "test", "--out", str(out), "--batch-size", "64"]
    calls = []
    real = embed_module.embed_items

    def counting(*a, **k):
        calls.append(len(a[3]))
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(out))  # dies after two batches
        return real(*a, **k)

    monkeypatch.setattr(embed_module, "embed_items", counting)
    with caplog.at_level(logging.INFO, logger="jointspace"):
        failed = runner.invoke(app, args)
    assert failed.exit_code == 1 and "no space left on device writing" in failed.output
    assert not out.exists() and "embed image: 64/" in caplog.text
    calls.clear()
    monkeypatch.setattr(embed_module, "embed_items", real)
    with caplog.at_level(logging.INFO, logger="jointspace"):
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "resuming: 2 of" in caplog.text
    resumed = pq.read_table(out)
    fresh = tmp_path / "fresh.parquet"
    runner.invoke(app, [*args[:-4], "--out", str(fresh), "--batch-size", "64"])
    assert resumed.equals(pq.read_table(fresh))
    assert not list(tmp_path.glob(".*.parts"))  # batches removed once the file holds them


def test_os_errors_are_one_line_naming_the_file(trained_run, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    args = ["eval", str(trained_run), "--json", str(blocker / "m.json")]
    result = runner.invoke(app, args, terminal_width=400)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.splitlines()[-1] == f"error: File exists: {blocker}"


def test_a_bug_inside_a_command_keeps_its_traceback(trained_run, monkeypatch):
    import jointspace.evaluate

    def broken(*args, **kwargs):
        raise AttributeError("a bug")

    monkeypatch.setattr(jointspace.evaluate, "evaluate_model", broken)
    result = runner.invoke(app, ["eval", str(trained_run)])
    assert isinstance(result.exception, AttributeError)  # not turned into "error: a bug"


def test_importing_the_cli_imports_no_heavy_library():
    import subprocess
    import sys

    code = (
        "import jointspace.cli, sys; "
        "print(sorted(m for m in ('torch','numpy','scipy','pandas','faiss') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_package_api_still_exposes_every_name():
    import jointspace

    for name in jointspace.__all__:
        assert getattr(jointspace, name) is not None
    assert set(jointspace.__all__) <= set(dir(jointspace))


def test_training_progress_reaches_stderr_when_it_is_a_file(tmp_path, digits_manifest):
    import subprocess
    import sys

    config = tmp_path / "tiny.yaml"
    tiny = tiny_config(batch_size=512, epochs=2, log_every=2)
    tiny.train.progress = True
    tiny.data.val_split = None
    tiny.to_yaml(config)
    log = tmp_path / "stderr.txt"
    args = [sys.executable, "-m", "jointspace.cli", "train", str(config)]
    args += ["--data", str(digits_manifest), "--out", str(tmp_path / "run")]
    with log.open("w") as stderr:  # not a terminal: no bar, lines instead
        assert subprocess.run(args, stderr=stderr, stdout=subprocess.DEVNULL).returncode == 0
    text = log.read_text()
    assert text.count("epoch 1/2 done") == 1 and text.count("epoch 2/2 done") == 1
    assert "train step 2/" in text
