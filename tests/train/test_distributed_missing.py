"""torchrun, 2 gloo processes on CPU, with absent audio (in some steps one rank's rows hold none,
the other's some): the losses and weights of one process, plain and with the gradient cache."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import jointspace
from absent_helpers import three_modality_config, write_three_modality_manifest
from jointspace.data import EpochBatchSampler
from jointspace.runs.fit import fit
from jointspace.train.logs import read_log

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
SRC = os.path.dirname(os.path.dirname(jointspace.__file__))
ROWS, AUDIO, BATCH, STEPS = 32, (3, 17, 26), 16, 6


def torchrun(config_path, out, manifest):
    args = ["-m", "jointspace.cli", "train", str(config_path), "--out", str(out)]
    done = subprocess.run(
        [*TORCHRUN, *args, "--data", str(manifest)],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def one_rank_without_audio(seed):
    """Whether some step gives one rank no audio row while the other has one (what this tests)."""
    for epoch in range(STEPS * BATCH // ROWS):
        for rows in EpochBatchSampler(ROWS, BATCH, seed=seed, epoch=epoch):
            held = [any(r in AUDIO for r in rows[k : k + BATCH // 2]) for k in (0, BATCH // 2)]
            if held[0] != held[1]:
                return True
    return False


@pytest.mark.parametrize("chunk", [None, 4])
def test_two_processes_with_absent_audio_give_the_run_of_one(tmp_path, chunk):
    manifest = write_three_modality_manifest(tmp_path / "data", rows=ROWS, audio_rows=AUDIO)
    config = three_modality_config(
        batch_size=BATCH, max_steps=STEPS, grad_cache_chunk=chunk, modality_dropout={"text": 0.3}
    )
    assert one_rank_without_audio(config.train.seed)
    fit(config, tmp_path / "one", manifest=manifest)
    (tmp_path / "c.yaml").write_text(config.to_yaml())
    torchrun(tmp_path / "c.yaml", tmp_path / "two", manifest)
    one, two = (read_log(tmp_path / r / "metrics.jsonl") for r in ("one", "two"))
    losses = [[r["loss"] for r in log if "loss" in r] for log in (one, two)]
    assert len(losses[1]) == STEPS
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    left = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    right = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    for name in left:
        if name.endswith("self_attn.in_proj_bias"):  # key bias: zero gradient but for rounding
            continue
        torch.testing.assert_close(right[name], left[name], rtol=1e-5, atol=1e-5, msg=name)
