"""kill -9 of train, embed and rerank at a seeded random point, then a rerun: nothing already
written is lost and the result equals an uninterrupted run's."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

import jointspace
from conftest import tiny_config
from jointspace.data import read_manifest
from jointspace.runs.export import read_embedding_metadata

CLI = [sys.executable, "-m", "jointspace.cli"]
# The package under test, whatever the working directory of the subprocess.
SRC = os.path.dirname(os.path.dirname(jointspace.__file__))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC}


def run(args, cwd):
    result = subprocess.run([*CLI, *args], cwd=cwd, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def kill_when(args, cwd, ready, timeout=60.0):
    """Start the CLI, SIGKILL it once ``ready()`` holds, and check it had not finished."""
    process = subprocess.Popen([*CLI, *args], cwd=cwd, env=ENV, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "never reached the kill point"
        time.sleep(0.01)
    assert process.poll() is None, "finished before the kill point"
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def last_step(path):
    try:
        lines = path.read_text().splitlines()
        return json.loads(lines[-1])["step"] if lines else 0
    except (OSError, ValueError, KeyError):
        return 0  # not written yet, or a line being written


def same_tensors(a, b):
    left, right = load_file(str(a)), load_file(str(b))
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), key


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, digits_manifest):
    """A briefly trained digits run on a 600-row manifest, with a tiny re-ranker config."""
    from jointspace.runs.fit import fit

    root = tmp_path_factory.mktemp("kill")
    lines = digits_manifest.read_text().splitlines()
    by_split = {}
    for line in lines[1:]:
        by_split.setdefault(line.rsplit(",", 1)[1], []).append(line)
    rows = [r for split in ("train", "val", "test") for r in by_split[split][:200]]
    (root / "m.csv").write_text("\n".join([lines[0], *rows]) + "\n")
    (root / "images").symlink_to(digits_manifest.parent / "images")
    config = tiny_config(batch_size=128, max_steps=4)
    config.rerank.width, config.rerank.depth, config.rerank.heads = 32, 1, 2
    config.rerank.epochs, config.rerank.candidates, config.rerank.pool = 1, 5, 8
    config.rerank.negatives, config.rerank.progress = 3, False
    fit(config, root / "run", manifest=root / "m.csv")
    return root


def test_kill_train_then_resume_reaches_the_uninterrupted_weights(tmp_path, small_run):
    config = tiny_config(batch_size=32, max_steps=24, checkpoint_every=4, log_every=1)
    config.data.val_split = None
    config.to_yaml(tmp_path / "tiny.yaml")
    args = ["train", str(tmp_path / "tiny.yaml"), "--data", str(small_run / "m.csv")]
    run([*args, "--out", "whole"], tmp_path)
    kill_at = random.Random(13).randint(5, 20)
    log = tmp_path / "killed" / "metrics.jsonl"
    kill_when([*args, "--out", "killed"], tmp_path, lambda: last_step(log) >= kill_at)
    checkpoints = sorted((tmp_path / "killed" / "checkpoints").glob("step-*"))
    assert checkpoints, "a checkpoint was written before the kill"
    saved = {p.name: (p / "model.safetensors").read_bytes() for p in checkpoints}
    run(["train", "--out", "killed", "--resume"], tmp_path)  # the run's own config.yaml
    for name, weights in saved.items():  # checkpoints kept by the resumed run are unchanged
        if (tmp_path / "killed" / "checkpoints" / name).exists():
            assert (
                tmp_path / "killed" / "checkpoints" / name / "model.safetensors"
            ).read_bytes() == (weights)
    same_tensors(
        tmp_path / "whole/model/model.safetensors", tmp_path / "killed/model/model.safetensors"
    )
    assert last_step(tmp_path / "killed" / "metrics.jsonl") == 24


def test_kill_embed_then_rerun_resumes_and_matches(tmp_path, small_run):
    import shutil

    shutil.copytree(small_run / "run", tmp_path / "run")
    args = ["embed", "run", "--batch-size", "8"]  # the run's own manifest: 200 images
    run([*args, "--out", "whole.parquet"], tmp_path)
    parts = tmp_path / ".killed.parquet.parts"
    kill_at = random.Random(7).randint(3, 20)
    kill_when(
        [*args, "--out", "killed.parquet"],
        tmp_path,
        lambda: len(list(parts.glob("part-*.parquet"))) >= kill_at,
    )
    assert not (tmp_path / "killed.parquet").exists()
    assert list(tmp_path.glob(".killed.parquet.*.tmp"))  # the output half written when killed
    finished = len(list(parts.glob("part-*.parquet")))
    result = run([*args, "--out", "killed.parquet"], tmp_path)
    assert f"resuming: {finished} of" in result.stderr  # the finished batches were kept
    whole, killed = (pq.read_table(tmp_path / f"{n}.parquet") for n in ("whole", "killed"))
    images = {row["image"] for row in read_manifest(small_run / "m.csv").rows}
    assert whole.num_rows == len(images) and killed.equals(whole)  # ids, labels, embeddings
    assert killed.column("id").to_pylist() == whole.column("id").to_pylist()
    assert killed.column("embedding").equals(whole.column("embedding"))
    metadata = [read_embedding_metadata(tmp_path / f"{n}.parquet") for n in ("whole", "killed")]
    assert metadata[0] == metadata[1] and metadata[0]["jointspace.model_fingerprint"]
    # The half-written output and parts the kill left behind are gone.
    assert not list(tmp_path.glob(".*.tmp")) and not parts.exists()


def test_kill_rerank_keeps_the_old_matcher_and_rerun_matches(tmp_path, small_run):
    import shutil

    from jointspace.matcher.model import load_matcher

    for name in ("whole", "killed"):
        shutil.copytree(small_run / "run", tmp_path / name)
    started = time.monotonic()
    run(["rerank", "whole", "--json", "whole.json"], tmp_path)
    seconds = time.monotonic() - started
    run(["rerank", "killed", "--candidates", "3"], tmp_path)  # an earlier matcher to keep safe
    matcher = tmp_path / "killed" / "model" / "matcher"
    old = {p.name: p.read_bytes() for p in matcher.iterdir()}
    delay = random.Random(5).uniform(0.3, 0.8) * seconds
    begun = time.monotonic()
    kill_when(["rerank", "killed", "--force"], tmp_path, lambda: time.monotonic() - begun > delay)
    assert {p.name: p.read_bytes() for p in matcher.iterdir()} == old
    load_matcher(matcher)  # still loadable
    run(["rerank", "killed", "--force", "--json", "killed.json"], tmp_path)
    whole = json.loads((tmp_path / "whole.json").read_text())
    assert json.loads((tmp_path / "killed.json").read_text()) == whole
    same_tensors(tmp_path / "whole/model/matcher/model.safetensors", matcher / "model.safetensors")
