"""torchrun, 2 gloo processes on CPU: the losses and weights of one process on the global batch,
exact resume after kill -9, a clear error for an uneven split, and rank 0 alone writing."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import jointspace
from conftest import tiny_config
from jointspace import load
from jointspace.config import ConfigError
from jointspace.data import EpochBatchSampler
from jointspace.models.feature_cache import FeatureCache, _read_shard
from jointspace.runs.fit import fit
from jointspace.train import checkpoint as ckpt
from jointspace.train.distributed import RANK_SEED_STRIDE, World
from jointspace.train.logs import read_log

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
SRC = os.path.dirname(os.path.dirname(jointspace.__file__))
PAUSE = Path(__file__).with_name("torchrun_pause.py")
PROBES = ["a handwritten 7", "the digit zero", "a three"]


def env():
    # Read at call time: conftest points JOINTSPACE_CACHE at the session's private cache.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC}


def torchrun(args, *, check=True, **options):
    done = subprocess.run(
        [*TORCHRUN, *options.pop("launcher", []), *args],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def config_file(path, config):
    path.write_text(config.to_yaml())
    return str(path)


def train_config(manifest, dropout, **train):
    # Global batch 64 (32 rows per rank); 8 steps, a checkpoint every 4.
    defaults = dict(batch_size=64, max_steps=8, checkpoint_every=4, warmup_steps=2)
    config = tiny_config(**(defaults | train))
    config.data.manifest = str(manifest)
    config.model.towers["text"].params["dropout"] = dropout
    config.train.device, config.train.log_every = "cpu", 1
    return config


@pytest.fixture(scope="module")
def pair(tmp_path_factory, digits_manifest):
    """One process in-process and two under torchrun, without and with the gradient cache
    (chunks of 8 of each rank's 32 rows): dropout 0, evaluation every 4 steps, the image tower
    frozen (trained from cached features; each run has a cache of its own)."""
    root = tmp_path_factory.mktemp("distributed")
    config = train_config("builtin:digits", 0.0, eval_every=4, progress=True)
    config.model.towers["image"].lock = True
    config.train.log_to = ["tensorboard"]
    config.train.feature_cache = str(root / "cache-one")
    fit(config, root / "one", manifest=digits_manifest)
    config.train.feature_cache = str(root / "cache-two")
    launcher = ["--log-dir", str(root / "logs"), "--redirects", "3"]
    args = ["-m", "jointspace.cli", "train", config_file(root / "c.yaml", config)]
    torchrun([*args, "--out", str(root / "two"), "--data", str(digits_manifest)], launcher=launcher)
    config.train.feature_cache, config.train.grad_cache_chunk = str(root / "cache-gc"), 8
    args = ["-m", "jointspace.cli", "train", config_file(root / "gc.yaml", config)]
    torchrun([*args, "--out", str(root / "two-gc"), "--data", str(digits_manifest)])
    return root, digits_manifest


def key_bias_rows(name, tensor):
    # nn.MultiheadAttention's in_proj_bias is [q | k | v]: a key bias adds one constant per query
    # row of the scores, which softmax cancels, so its gradient is zero but for rounding noise;
    # AdamW normalises that noise to lr-sized steps that differ with summation order.
    if name.endswith("self_attn.in_proj_bias"):
        width = len(tensor) // 3
        return slice(width, 2 * width)
    return None


def assert_same_run(expected, got, manifest):
    """Two runs of the same rows: the same losses, evaluations and weights, up to rounding."""
    one, two = read_log(expected / "metrics.jsonl"), read_log(got / "metrics.jsonl")
    train = [[r for r in log if "loss" in r] for log in (one, two)]
    assert [r["step"] for r in train[1]] == list(range(1, 9))
    # fp32, same rows in the same global order; only summation order differs (two half-batch
    # gradients all-reduced vs one full sum, the same values concatenated by the gather; the
    # gradient cache sums a chunk's contribution at a time): rounding of ~1e-7 per step, so
    # 1e-5 relative leaves room without hiding a wrong update (tried on the gradient cache: a
    # chunk left out of the replay, or no averaging over the ranks, moves step 2's loss by 2e-3).
    assert [r["loss"] for r in train[1]] == pytest.approx([r["loss"] for r in train[0]], rel=1e-5)
    evals = [[r for r in log if "eval" in r] for log in (one, two)]
    assert [r["step"] for r in evals[1]] == [4, 8]  # rank 0 evaluated, once per eval step
    for a, b in zip(evals[0], evals[1], strict=True):
        # Ranking metrics: rounding can swap a near-tie deep in a ranking (mAP moves ~1e-6).
        assert b["eval"] == pytest.approx(a["eval"], abs=1e-4)
    # The saved model (the best evaluation's step) and the last step's weights.
    for weights in ("model", "checkpoints/step-0000008"):
        left = load_file(str(expected / weights / "model.safetensors"))
        right = load_file(str(got / weights / "model.safetensors"))
        assert left.keys() == right.keys()
        for name in left:
            a, b = left[name].clone(), right[name].clone()
            rows = key_bias_rows(name, a)
            if rows is not None:
                a[rows] = b[rows] = 0
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=f"{weights}: {name}")
    # The key bias rows left out above change nothing the model computes.
    images = sorted((manifest.parent / "images").rglob("*.png"))[:3]
    for modality, inputs in (("text", PROBES), ("image", images)):
        a = load(expected).encode(inputs, modality)
        b = load(got).encode(inputs, modality)
        assert abs(a - b).max() < 1e-5


def test_two_processes_give_the_losses_and_weights_of_one(pair):
    pair, manifest = pair
    assert_same_run(pair / "one", pair / "two", manifest)


def test_the_gradient_cache_under_torchrun_gives_the_same_run(pair):
    # Each rank embeds its 32 rows in chunks of 8, the embeddings are gathered, and the replay
    # reduces once (no_sync for the first three chunks): one process's full batch, and two
    # processes' uncached steps.
    pair, manifest = pair
    assert_same_run(pair / "one", pair / "two-gc", manifest)
    assert_same_run(pair / "two", pair / "two-gc", manifest)
    final, start = (
        load_file(str(pair / "two-gc" / "checkpoints" / f"step-000000{s}" / "model.safetensors"))
        for s in (8, 4)
    )
    # Steps 5-8 trained the text tower's body too (the image tower is frozen but for its head).
    moved = [k for k in final if not torch.equal(final[k], start[k])]
    assert any(k.startswith("towers.text.") and "head" not in k for k in moved)
    assert "logit_scale" in moved


def test_only_rank_zero_writes_or_speaks(pair):
    pair, _ = pair
    one, two = pair / "one", pair / "two"
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert [p.name for p in ckpt.list_checkpoints(two / "checkpoints")] == [
        "step-0000004",
        "step-0000008",
    ]
    steps = [r["step"] for r in read_log(two / "metrics.jsonl") if "loss" in r]
    assert steps == sorted(set(steps))  # each step logged once: one writer
    # ... and one TensorBoard writer, holding the steps metrics.jsonl holds.
    assert len(list((two / "tensorboard").glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(two / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("loss")] == steps
    assert [e.step for e in events.Scalars("val/primary")] == [4, 8]
    # Both ranks' RNG states are in rank 0's checkpoint, and they are distinct streams.
    saved = load_file(str(two / "checkpoints" / "step-0000008" / ckpt.OPTIM_FILE))
    assert not torch.equal(saved["rng_state"], saved["rng_state.rank1"])
    logs = {p.parent.name + "/" + p.name: p.read_text() for p in (pair / "logs").rglob("*.log")}
    assert "train step 8/8" in logs["0/stderr.log"]
    assert "trained 8 steps" in logs["0/stderr.log"]
    assert logs["1/stderr.log"].strip() == "" and logs["1/stdout.log"].strip() == ""


def test_frozen_features_are_computed_once_not_once_per_rank(pair):
    pair, _ = pair
    # Rank 0 fills the cache first and rank 1 reads it; had both computed, each would have
    # written shards of its own (unique names), doubling them.
    one, two = (sorted((pair / c).glob("*/shard-*")) for c in ("cache-one", "cache-two"))
    assert len(two) == len(one) >= 1
    assert [p.parent.name for p in two] == [p.parent.name for p in one]  # one fingerprint
    rows = [len(_read_shard(p)[0]) for p in two]
    assert sum(rows) == sum(len(_read_shard(p)[0]) for p in one)


def test_kill_9_of_two_processes_then_resume_gives_the_uninterrupted_run(tmp_path, digits_manifest):
    # Dropout on: each rank's RNG stream must resume where it was. Checkpoints at 4, 6, 8; the
    # job is killed right after step 8's, which is then set aside as the uninterrupted result,
    # so the resume starts from step 6 and must redo steps 7 and 8 exactly.
    config = train_config(digits_manifest, 0.1, checkpoint_every=2, keep_checkpoints=3)
    config.data.val_split = None
    path = config_file(tmp_path / "c.yaml", config)
    run, marker = tmp_path / "run", tmp_path / "paused"
    job = subprocess.Popen(
        [*TORCHRUN, str(PAUSE), path, str(run), "8", str(marker)],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert job.poll() is None, job.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the run never reached step 8"
            time.sleep(0.05)
    finally:  # kill -9 the launcher and both workers (each in a session of its own)
        workers = [int(p.read_text()) for p in tmp_path.glob("paused.pid*")]
        for pid in [job.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        job.wait()
        job.stderr.close()
    assert len(workers) == 2
    assert not (run / "model").exists()  # killed before the end of the run
    straight = read_log(run / "metrics.jsonl")
    assert [r["step"] for r in straight] == list(range(1, 9))
    reference = tmp_path / "step-8"
    (run / "checkpoints" / "step-0000008").rename(reference)

    torchrun(["-m", "jointspace.cli", "train", "--resume", "--out", str(run)])
    resumed = read_log(run / "metrics.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, 9))
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]  # 7 and 8 bit for bit
    a = load_file(str(reference / "model.safetensors"))
    b = load_file(str(run / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_batch_the_processes_cannot_split_is_a_one_line_error(tmp_path, digits_manifest):
    config = train_config(digits_manifest, 0.0, batch_size=63)
    path, out = config_file(tmp_path / "c.yaml", config), tmp_path / "run"
    done = torchrun(["-m", "jointspace.cli", "train", path, "--out", str(out)], check=False)
    assert done.returncode != 0
    message = (
        "train.batch_size 63 is not divisible by the 2 processes (WORLD_SIZE=2): each rank takes "
        "an equal slice of the global batch; use a multiple of the process count"
    )
    # Each rank reports its own error in one line (the first to fail makes torchrun stop the
    # other, which may not get to print); torchrun then adds its own summary of the failure.
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert errors, done.stderr
    assert all(re.fullmatch(r"error( \(rank 1\))?: " + re.escape(message), e) for e in errors)
    assert not [line for line in done.stderr.splitlines() if line.startswith("[rank")]
    assert not out.exists()  # refused before anything was written


def test_world_is_read_from_the_torchrun_environment():
    assert World.from_env("auto", {}) == World()  # no torchrun: a world of one, no group
    assert World.from_env("cpu", {"WORLD_SIZE": "1", "RANK": "0"}) == World()
    world = World.from_env("cpu", {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (world.rank, world.world_size, world.local_rank) == (3, 4, 1)
    assert world.device == torch.device("cpu") and not world.is_main and world.distributed
    with pytest.raises(ConfigError, match="'mps' cannot train across processes"):
        World.from_env("mps", {"WORLD_SIZE": "2", "RANK": "0"})
    with pytest.raises(ConfigError, match="torchrun environment is not valid"):
        World.from_env("cpu", {"WORLD_SIZE": "two"})
    World().check_batch(63)  # one process takes any batch
    with pytest.raises(ConfigError, match="batch_size 63 is not divisible by the 4 processes"):
        world.check_batch(63)


def test_each_rank_loads_its_contiguous_slice_of_the_global_batch():
    sampler = EpochBatchSampler(100, 12, seed=5, epoch=2, start_batch=1)
    ranks = [World(rank, 3, rank, torch.device("cpu")).shard(sampler) for rank in range(3)]
    assert [len(r) for r in ranks] == [len(sampler)] * 3
    for full, *slices in zip(sampler, *ranks, strict=True):
        assert [len(s) for s in slices] == [4, 4, 4] and [
            *slices[0],
            *slices[1],
            *slices[2],
        ] == full
    assert World().shard(sampler) is sampler


def test_rank_seeds_and_a_missing_rank_state(caplog):
    World().seed(7)
    first = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(torch.rand(3), first)  # rank 0 draws what a single process would
    World(2, 4, 0, torch.device("cpu")).seed(7)
    second = torch.rand(3)
    torch.manual_seed(7 + 2 * RANK_SEED_STRIDE)
    assert torch.equal(torch.rand(3), second) and not torch.equal(first, second)
    # Resumed with more processes than saved: the new rank reseeds, with a warning.
    with caplog.at_level("WARNING", logger="jointspace"):
        World(2, 4, 0, torch.device("cpu")).restore_rng(None, 7, step=10)
    assert "no RNG state for rank 2" in caplog.text
    restored = torch.rand(3)
    torch.manual_seed(7 + 2 * RANK_SEED_STRIDE + 10)
    assert torch.equal(restored, torch.rand(3))


def _fill(root, writer, count):
    # In a forked process: many small stores, so merges (every 3 shards) race the other writer.
    from jointspace.models import feature_cache

    feature_cache.MAX_SHARDS = 3
    cache = feature_cache.FeatureCache(root)
    for i in range(count):
        keys = [f"{writer}-{i}-{j}" for j in range(4)]
        cache._store("fp", keys, torch.stack([_row(k) for k in keys]))


def _row(key):
    return torch.tensor([float(sum(key.encode())), float(len(key))])


def test_concurrent_cache_writers_and_merges_lose_nothing(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_fill, args=(tmp_path, w, 40)) for w in ("a", "b", "c")]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    table = FeatureCache(tmp_path)._table("fp")
    expected = {f"{w}-{i}-{j}" for w in "abc" for i in range(40) for j in range(4)}
    assert set(table) == expected
    assert all(torch.equal(table[k], _row(k)) for k in expected)
    assert not list(tmp_path.rglob("*.damaged"))


@pytest.mark.parametrize("chunk", [3, 8])
def test_under_ddp_the_cache_runs_even_in_one_chunk(tmp_path, chunk):
    # A one-process group: DDP's reducer runs as with many. A net wrapped for the cache
    # (find_unused_parameters) is always given the cached step, even when a rank's 8 rows fit in
    # one chunk, and its gradients are the cached step's without DDP, step after step.
    from jointspace.config import ObjectiveConfig
    from jointspace.objectives.combined import build_objective
    from jointspace.train.step import forward_backward
    from tiny_steps import make_batch, tiny_model

    objective = build_objective([ObjectiveConfig("siglip")])
    model = tiny_model(0.0, objective)
    batch = make_batch(model, 8)
    forward_backward(model, objective, batch)
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    forward_backward(model, objective, batch, grad_cache_chunk=3)  # chunks of 3, 3 and 2
    cached = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
        for _ in range(3):
            model.zero_grad(set_to_none=True)
            forward_backward(model, objective, batch, grad_cache_chunk=chunk, net=net)
            got = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
            assert got.keys() == plain.keys() and "logit_bias" in got
            for name, grad in plain.items():
                # One rank: DDP's average is a copy, so the chunked sums are bit for bit the
                # cache's without DDP; one chunk differs from the plain step by rounding only.
                if chunk == 3:
                    assert torch.equal(got[name], cached[name]), name
                assert (got[name] - grad).norm() <= 5e-6 * grad.norm() + 1e-12, name
    finally:
        torch.distributed.destroy_process_group()
