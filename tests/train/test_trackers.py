"""TensorBoard event files and the MLflow run hold exactly what metrics.jsonl holds."""

import json
import re
import shutil
import sys

import pytest
import yaml
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import tiny_config
from jointspace import fit
from jointspace.config import ConfigError, ExperimentConfig
from jointspace.errors import MissingPackageError
from jointspace.train.logs import read_log
from jointspace.train.trackers import (
    TrackerError,
    flat_params,
    mlflow_name,
    open_trackers,
    parse_log_to,
    scalars,
)

# MLflow's SQLite store uses an SQLAlchemy loader strategy SQLAlchemy 2.1 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")


class Interrupt(Exception):
    pass


def interrupt_at(at):
    def callback(step, record):
        if step == at:
            raise Interrupt()

    return callback


def expected(records) -> dict[str, dict[int, float]]:
    """name → {step: value}, from metrics.jsonl records."""
    table: dict[str, dict[int, float]] = {}
    for record in records:
        for name, value in scalars(record):
            assert record["step"] not in table.setdefault(name, {})  # one value per step
            table[name][record["step"]] = value
    return table


def tensorboard_scalars(run) -> dict[str, dict[int, float]]:
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    table = {}
    for tag in events.Tags()["scalars"]:
        points = [(e.step, e.value) for e in events.Scalars(tag)]
        assert len(points) == len({s for s, _ in points}), f"{tag}: a step logged twice"
        table[tag] = dict(points)
    return table


def mlflow_metrics(run) -> tuple[MlflowClient, str, dict[str, dict[int, float]]]:
    recorded = json.loads((run / "mlflow_run.json").read_text())
    assert recorded["tracking_uri"] is None  # RUN/mlflow.db, wherever RUN is now
    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    run_id = recorded["run_id"]
    table = {}
    for key in client.get_run(run_id).data.metrics:
        history = client.get_metric_history(run_id, key)
        assert len(history) == len({m.step for m in history}), f"{key}: a step logged twice"
        table[key] = {m.step: m.value for m in history}
    return client, run_id, table


def assert_same(actual, wanted, rel):
    assert sorted(actual) == sorted(wanted)
    for name, points in wanted.items():
        assert sorted(actual[name]) == sorted(points), name
        for step, value in points.items():
            assert actual[name][step] == pytest.approx(value, rel=rel, abs=1e-12), (name, step)


def test_trackers_hold_metrics_jsonl_across_a_killed_and_resumed_run(
    tmp_path, digits_manifest, monkeypatch, capfd
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    config = tiny_config(
        batch_size=256, max_steps=8, log_every=1, eval_every=4, checkpoint_every=3,
        warmup_steps=2, progress=True, log_to=["tensorboard", "mlflow"],
    )  # fmt: skip
    run = tmp_path / "run"
    with pytest.raises(Interrupt):
        fit(config, run, manifest=digits_manifest, callbacks=[interrupt_at(5)])
    before = expected(read_log(run / "metrics.jsonl"))
    assert sorted(before["loss"]) == [1, 2, 3, 4, 5] and sorted(before["val/primary"]) == [4]
    _, run_id, first = mlflow_metrics(run)
    assert_same(first, {mlflow_name(k): v for k, v in before.items()}, rel=1e-12)
    # A kill -9 saves nothing: the run resumes from its periodic checkpoint at step 3 and
    # trains steps 4 and 5 (and the evaluation at 4) a second time.
    shutil.rmtree(run / "checkpoints" / "step-0000005")
    capfd.readouterr()
    fit(config, run, manifest=digits_manifest, resume=True)
    after = expected(read_log(run / "metrics.jsonl"))
    assert sorted(after["loss"]) == list(range(1, 9)) and sorted(after["val/primary"]) == [4, 8]

    # TensorBoard purges the repeated steps: it shows exactly metrics.jsonl (float32 values).
    assert_same(tensorboard_scalars(run), after, rel=1e-6)

    # MLflow cannot delete: it keeps the first values of steps 4-5, then what metrics.jsonl holds.
    client, resumed_id, logged = mlflow_metrics(run)
    assert resumed_id == run_id
    merged = {
        mlflow_name(k): {s: before[k][s] if s in before.get(k, {}) else v for s, v in p.items()}
        for k, p in after.items()
    }
    assert_same(logged, merged, rel=1e-12)
    # ... which differ from the repeat only in timing: the resume is exact.
    for key in ("loss", "clip_loss", "lr", "temperature", "val/primary"):
        for step in before[key]:
            assert after[key][step] == pytest.approx(before[key][step], abs=1e-6), (key, step)
    mlflow_run = client.get_run(run_id)
    assert mlflow_run.info.status == "FINISHED"
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert mlflow_run.data.params == flat_params(recorded)
    assert mlflow_run.data.params["train.lr"] == str(config.train.lr)
    assert mlflow_run.data.params["objectives.0.name"] == "clip"

    # Progress lines in a log (stderr is not a terminal) carry the numbers metrics.jsonl holds.
    err = capfd.readouterr().err
    assert "\r" not in err
    steps = re.findall(r"^train step (\d+)/8  loss (\S+)  lr (\S+)", err, re.M)
    assert [int(s) for s, _, _ in steps] == [4, 5, 6, 7, 8]
    for step, loss, lr in steps:
        assert float(loss) == pytest.approx(after["loss"][int(step)], abs=5e-5)
        assert float(lr) == pytest.approx(after["lr"][int(step)], rel=5e-3)
    evals = re.findall(r"^eval at step (\d+) \(epoch [\d.]+\): primary (\S+)", err, re.M)
    assert [int(s) for s, _ in evals] == [4, 8]
    for step, primary in evals:
        assert float(primary) == pytest.approx(after["val/primary"][int(step)], abs=5e-5)
    epoch = re.findall(r"^epoch 1/1 done: step 8/8, mean loss ([\d.]+)", err, re.M)
    assert len(epoch) == 1  # the mean of the steps trained since the resume
    assert float(epoch[0]) == pytest.approx(sum(after["loss"][s] for s in range(4, 9)) / 5, 5e-5)


def test_metric_names_and_params():
    record = {"step": 3, "eval": {"text_to_image/R@1": 0.5, "relevance": "label", "queries": 80}}
    assert scalars(record) == [("val/text_to_image/R@1", 0.5), ("val/queries", 80.0)]
    assert mlflow_name("val/text_to_image/R@1") == "val/text_to_image/R_at_1"
    assert mlflow_name("a+b") == "a_b"
    tree = {"train": {"lr": 0.001, "betas": [0.9, 0.98], "max_steps": None, "log_to": []}}
    assert flat_params(tree) == {
        "train.lr": "0.001",
        "train.betas.0": "0.9",
        "train.betas.1": "0.98",
        "train.max_steps": "null",
        "train.log_to": "[]",
    }


def test_an_unknown_tracker_is_a_config_error_naming_it(tmp_path):
    wanted = r"train\.log_to\[1\]: must be one of tensorboard, mlflow, got 'wandb'"
    with pytest.raises(ConfigError, match=wanted):
        ExperimentConfig.from_dict({"train": {"log_to": ["mlflow", "wandb"]}})
    assert parse_log_to(" tensorboard, mlflow,") == ["tensorboard", "mlflow"]
    assert parse_log_to("") == []
    wanted = "--log-to: unknown tracker 'wandb'; known: tensorboard, mlflow"
    with pytest.raises(ConfigError, match=wanted):
        parse_log_to("tensorboard,wandb")
    with pytest.raises(ConfigError, match=r"train\.log_to: unknown tracker 'x'"):
        open_trackers(["x"], tmp_path, [], {}, resumed=False)
    assert not any(tmp_path.iterdir())


def test_cli_log_to_reaches_the_run_and_a_bad_name_is_one_line(
    tmp_path, digits_manifest, monkeypatch
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from typer.testing import CliRunner

    from jointspace.cli import app

    config = tiny_config(batch_size=256, max_steps=2, log_every=1)
    config.data.val_split = None
    config.to_yaml(tmp_path / "c.yaml")
    args = ["train", str(tmp_path / "c.yaml"), "--data", str(digits_manifest)]
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad"), "--log-to", "wandb"])
    assert bad.exit_code != 0 and not (tmp_path / "bad").exists()
    assert "--log-to: unknown tracker 'wandb'" in bad.output
    assert "Traceback" not in bad.output
    run = tmp_path / "run"
    good = CliRunner().invoke(app, [*args, "--out", str(run), "--log-to", "tensorboard"])
    assert good.exit_code == 0, good.output
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["log_to"] == ["tensorboard"]
    assert_same(tensorboard_scalars(run), expected(read_log(run / "metrics.jsonl")), 1e-6)
    assert not (run / "mlflow.db").exists()
    # A tracker added on --resume first receives everything metrics.jsonl holds.
    more = ["train", "--out", str(run), "--resume", "--max-steps", "3"]
    resumed = CliRunner().invoke(app, [*more, "--log-to", "tensorboard,mlflow"])
    assert resumed.exit_code == 0, resumed.output
    logged = expected(read_log(run / "metrics.jsonl"))
    assert sorted(logged["loss"]) == [1, 2, 3]
    assert_same(tensorboard_scalars(run), logged, 1e-6)
    assert_same(mlflow_metrics(run)[2], logged, 1e-12)  # no @ in training metric names


@pytest.mark.parametrize(("name", "module", "install"), [
    ("tensorboard", "torch.utils.tensorboard", "pip install tensorboard"),
    ("mlflow", "mlflow.tracking", "pip install mlflow-skinny sqlalchemy alembic"),
])  # fmt: skip
def test_a_missing_package_names_the_install(tmp_path, monkeypatch, name, module, install):
    monkeypatch.setitem(sys.modules, module, None)  # `import` of it now raises ImportError
    with pytest.raises(MissingPackageError, match=f"train.log_to: {name} needs `{install}`"):
        open_trackers([name], tmp_path, [], {}, resumed=False)


def test_a_write_failure_is_one_line_naming_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "tensorboard").write_text("a file where the event directory goes")
    with pytest.raises(TrackerError, match=r"^tensorboard: could not write .*tensorboard: ") as err:
        open_trackers(["tensorboard"], tmp_path, [], {}, resumed=False)
    assert "\n" not in str(err.value)
    (tmp_path / "mlflow.db").mkdir()  # SQLite cannot open a directory
    wanted = r"^mlflow: could not write sqlite:///.*mlflow\.db: "
    with pytest.raises(TrackerError, match=wanted) as err:
        open_trackers(["mlflow"], tmp_path, [], {}, resumed=False)
    assert "\n" not in str(err.value)


def test_a_store_failing_mid_run_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    [tracker] = open_trackers(["mlflow"], tmp_path, [], {}, resumed=False)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tracker.client, "log_batch", full)
    with pytest.raises(TrackerError, match=r"^mlflow: could not write .*No space left on device$"):
        tracker.log(1, [("loss", 1.0)])


def test_compare_log_to_gives_each_objective_its_own_trackers(tmp_path, digits_manifest):
    from typer.testing import CliRunner

    from jointspace.cli import app

    config = tiny_config(batch_size=256, max_steps=2, log_every=1)
    config.data.val_split = None
    config.to_yaml(tmp_path / "c.yaml")
    out = tmp_path / "compare"
    args = ["compare", str(tmp_path / "c.yaml"), "--data", str(digits_manifest), "--out", str(out)]
    done = CliRunner().invoke(
        app, [*args, "--objectives", "clip,siglip", "--log-to", "tensorboard"]
    )
    assert done.exit_code == 0, done.output
    for name in ("clip", "siglip"):
        logged = expected(read_log(out / name / "metrics.jsonl"))
        assert f"{name}_loss" in logged and sorted(logged["loss"]) == [1, 2]
        assert_same(tensorboard_scalars(out / name), logged, 1e-6)
