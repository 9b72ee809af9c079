"""``fit``: train an experiment config into a run directory (new, or resumed)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch

from jointspace.atomic import write_text_atomic
from jointspace.config import ExperimentConfig
from jointspace.data import Manifest, PairedDataset, load_manifest
from jointspace.data.shard_dataset import ShardDataset
from jointspace.data.shard_set import ShardSet, is_shard_spec
from jointspace.errors import JointspaceError
from jointspace.evaluate.retrieval import RetrievalEvaluator
from jointspace.models.build import build_model
from jointspace.models.feature_cache import FeatureCache
from jointspace.models.joint import JointModel
from jointspace.objectives.combined import build_objective
from jointspace.runs.run import RUN_CONFIG
from jointspace.train import checkpoint as ckpt
from jointspace.train.distributed import World
from jointspace.train.loader import TrainData
from jointspace.train.trainer import Callback, Trainer, TrainResult

log = logging.getLogger("jointspace")


class RunExistsError(JointspaceError, FileExistsError):
    """A training run would overwrite files of another run (or of a user) in its directory."""


class NoRunError(JointspaceError, FileNotFoundError):
    """``--resume`` pointed at a directory that holds no run."""


# Captions a tokenizer learns from when training streams shards (the first ones, in order).
MAX_CORPUS = 200_000
# What ``fit`` writes at the top of a run directory: anything else there is left alone.
RUN_ENTRIES = (RUN_CONFIG, "checkpoints", "model", "metrics.jsonl", "metrics.csv")


def fit(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    manifest: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    world: World | None = None,
) -> TrainResult:
    """Train ``config`` into ``out_dir``; the selected model ends up in ``out_dir/model``.

    A new run refuses a directory that already holds run files (nothing is written then).
    ``resume`` continues from the latest checkpoint (a run killed before its first one starts
    afresh); its ``config.yaml`` is replaced only once a step has trained. Under torchrun every
    rank calls this with its ``world`` (train/distributed.py): rank 0 alone writes ``out_dir``.
    """
    world = world or World()
    out_dir = Path(out_dir)
    config = copy.deepcopy(config)  # the recorded manifest below must not leak to the caller
    data = config.data
    spec = manifest or data.manifest
    resume = resume and _has_checkpoint(out_dir)
    if not resume:
        check_new_run(out_dir)
    full: Manifest | None = None
    train_rows: Manifest | ShardSet
    if is_shard_spec(spec):
        train_rows = ShardSet.open(spec)  # streamed: counts come from its index
    else:
        full = load_manifest(spec, data.modalities, skip_bad=data.skip_bad)
        train_rows = full.split(data.train_split) if data.train_split else full
    data.manifest = manifest_spec(spec)
    if data.val_manifest is not None:
        data.val_manifest = manifest_spec(data.val_manifest)
    torch.manual_seed(config.train.seed)
    model = _initial_model(config, train_rows, out_dir, resume)
    model.feature_cache = FeatureCache.from_setting(config.train.feature_cache)
    objective = build_objective(config.objectives)
    evaluator = _evaluator(config, full)
    preprocess = {m: model.tower(m).preprocess for m in data.modalities}
    seed = config.train.seed if data.augment else None
    dataset: TrainData
    if isinstance(train_rows, ShardSet):
        dataset = _stream(train_rows, preprocess, config, seed, world)
    else:
        dataset = PairedDataset(train_rows, preprocess, augment_seed=seed)
    record = partial(_record_config, out_dir / RUN_CONFIG, config.to_yaml())
    if resume and world.is_main:
        callbacks = [*callbacks, _once(record)]
    trainer = Trainer(
        model,
        objective,
        config.train,
        out_dir,
        evaluator=evaluator,
        callbacks=callbacks,
        feature_cache=model.feature_cache,
        world=world,
    )
    world.barrier()  # every rank has looked at out_dir before rank 0 writes into it
    if not resume and world.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        record()
    return trainer.fit(dataset, resume=resume)


def _evaluator(config: ExperimentConfig, full: Manifest | None) -> RetrievalEvaluator | None:
    """Evaluation during training: the val split of ``data.val_manifest`` (all its rows when it
    has no split column), else of the training manifest; None when there is none."""
    data = config.data
    if data.val_manifest is not None:
        rows = load_manifest(data.val_manifest, data.modalities, skip_bad=data.skip_bad)
        if data.val_split is not None and "split" in rows.columns:
            rows = rows.split(data.val_split)  # a clear error naming the file when it is absent
        return RetrievalEvaluator(rows, config.eval, data.modalities)
    if full is None or data.val_split is None or data.val_split not in full.splits():
        return None
    return RetrievalEvaluator(full.split(data.val_split), config.eval, data.modalities)


def check_new_run(out_dir: Path) -> None:
    """Refuse to start a run where one already is (or where its files would overwrite others)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise RunExistsError(f"{out_dir} is a file, not a run directory: choose another --out")
    taken = [name for name in RUN_ENTRIES if (out_dir / name).exists()]
    if taken:
        what = "checkpoints" if "checkpoints" in taken else "run files"
        raise RunExistsError(
            f"{out_dir} already holds {what} ({', '.join(taken)}): continue that run with "
            "--resume, or choose another --out (nothing was written)"
        )


def _has_checkpoint(out_dir: Path) -> bool:
    if ckpt.latest_checkpoint(out_dir / "checkpoints") is not None:
        return True
    if (out_dir / RUN_CONFIG).is_file():
        return False  # started but killed before its first checkpoint: nothing to lose
    raise NoRunError(f"nothing to resume: {out_dir} holds no run ({RUN_CONFIG} missing)")


def _record_config(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text() != text:
        write_text_atomic(path, text)


def _once(action: Callable[[], None]) -> Callback:
    done: list[int] = []

    def callback(step: int, record: dict[str, float]) -> None:
        if not done:
            done.append(step)
            action()

    return callback


def manifest_spec(spec: str | Path) -> str:
    """How a run records its data: ``builtin:NAME`` as given, a file or shards absolutely."""
    text = str(spec)
    if text.startswith("builtin:"):
        return text
    if is_shard_spec(text):
        return str(Path(text).parent.resolve() / Path(text).name)
    path = Path(text)
    return str(path.resolve()) if path.exists() else f"builtin:{text}"


def _initial_model(
    config: ExperimentConfig, train_rows: Manifest | ShardSet, out_dir: Path, resume: bool
) -> JointModel:
    # On resume the tokenizer comes from the checkpoint, never retrained.
    latest = ckpt.latest_checkpoint(out_dir / "checkpoints") if resume else None
    if latest is not None:
        return build_model(config.model, assets_dir=latest)
    if isinstance(train_rows, ShardSet):
        wanted = "text" in config.data.modalities
        corpus = train_rows.texts(config.data.train_split, MAX_CORPUS) if wanted else None
    else:
        corpus = train_rows.column("text") if "text" in train_rows.columns else None
    return build_model(config.model, corpus=corpus)


def _stream(
    shards: ShardSet, preprocess: dict, config: ExperimentConfig, seed: int | None, world: World
) -> ShardDataset:
    data, train = config.data, config.train
    if data.val_split is not None and data.val_manifest is None:
        log.info(
            "training from shards: no evaluation during training (it reads a manifest); set "
            "data.val_manifest, or evaluate afterwards with `jointspace eval RUN --data MANIFEST`"
        )
    world.check_batch(train.batch_size)
    return ShardDataset(
        shards,
        preprocess,
        split=data.train_split,
        shuffle_buffer=data.shuffle_buffer,
        seed=train.seed,
        augment_seed=seed,
        batch_size=train.batch_size // world.world_size,  # each rank streams its share
        num_workers=train.num_workers,
    )
