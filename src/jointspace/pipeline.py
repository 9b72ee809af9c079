"""Experiments from a config: build data, model and objective, then train or evaluate."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch

from jointspace.atomic import write_text_atomic
from jointspace.config import ConfigError, EvalConfig, ExperimentConfig, RerankConfig
from jointspace.data import Manifest, ManifestError, PairedDataset, read_manifest, resolve_manifest
from jointspace.errors import JointspaceError
from jointspace.evaluate.retrieval import evaluate_retrieval
from jointspace.matcher import (
    MATCHER_DIR,
    CrossModalMatcher,
    fit_matcher,
    fit_prior_weight,
    matching_set,
    rerank_metrics,
    save_matcher,
)
from jointspace.models.build import build_model
from jointspace.models.feature_cache import FeatureCache
from jointspace.models.io import load, model_fingerprint, resolve_model_dir
from jointspace.models.joint import JointModel
from jointspace.objectives.combined import build_objective
from jointspace.train import checkpoint as ckpt
from jointspace.train.trainer import Callback, Trainer, TrainResult

RUN_CONFIG = "config.yaml"


def load_manifest(
    spec: str | Path, modalities: Sequence[str], *, split: str | None = None, skip_bad: bool = False
) -> Manifest:
    """Resolve a path or ``builtin:NAME``, validate it and keep one split (all rows if None)."""
    manifest = read_manifest(resolve_manifest(spec), required=modalities, skip_bad=skip_bad)
    return manifest.split(split) if split else manifest


class RunExistsError(JointspaceError, FileExistsError):
    """A training run would overwrite files of another run (or of a user) in its directory."""


class NoRunError(JointspaceError, FileNotFoundError):
    """``--resume`` pointed at a directory that holds no run."""


# What ``fit`` writes at the top of a run directory: anything else there is left alone.
RUN_ENTRIES = (RUN_CONFIG, "checkpoints", "model", "metrics.jsonl", "metrics.csv")


def fit(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    manifest: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train ``config`` into ``out_dir``; the selected model ends up in ``out_dir/model``.

    A new run refuses a directory that already holds run files (nothing is written then).
    ``resume`` continues from the latest checkpoint (a run killed before its first one starts
    afresh); its ``config.yaml`` is replaced only once a step has trained.
    """
    out_dir = Path(out_dir)
    config = copy.deepcopy(config)  # the recorded manifest below must not leak to the caller
    data = config.data
    spec = manifest or data.manifest
    resume = resume and _has_checkpoint(out_dir)
    if not resume:
        check_new_run(out_dir)
    full = load_manifest(spec, data.modalities, skip_bad=data.skip_bad)
    data.manifest = manifest_spec(spec)
    train_rows = full.split(data.train_split) if data.train_split else full
    has_val = data.val_split is not None and data.val_split in full.splits()
    torch.manual_seed(config.train.seed)
    model = _initial_model(config, train_rows, out_dir, resume)
    model.feature_cache = FeatureCache.from_setting(config.train.feature_cache)
    objective = build_objective(config.objectives)
    evaluator = None
    if has_val:
        val_rows = full.split(data.val_split)
        evaluator = partial(
            evaluate_model, manifest=val_rows, config=config.eval, modalities=data.modalities
        )
    preprocess = {m: model.tower(m).preprocess for m in data.modalities}
    seed = config.train.seed if data.augment else None
    dataset = PairedDataset(train_rows, preprocess, augment_seed=seed)
    record = partial(_record_config, out_dir / RUN_CONFIG, config.to_yaml())
    if resume:
        callbacks = [*callbacks, _once(record)]
    trainer = Trainer(
        model,
        objective,
        config.train,
        out_dir,
        evaluator=evaluator,
        callbacks=callbacks,
        feature_cache=model.feature_cache,
    )
    if not resume:
        out_dir.mkdir(parents=True, exist_ok=True)
        record()
    return trainer.fit(dataset, resume=resume)


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
    done = []

    def callback(step: int, record: dict[str, float]) -> None:
        if not done:
            done.append(step)
            action()

    return callback


def manifest_spec(spec: str | Path) -> str:
    """How a run records its manifest: ``builtin:NAME`` as given, a file as its absolute path."""
    text = str(spec)
    if text.startswith("builtin:"):
        return text
    path = Path(text)
    return str(path.resolve()) if path.exists() else f"builtin:{text}"


def run_manifest(model_dir: str | Path, data: str | None) -> str:
    """``--data`` if given, else the manifest the run in ``model_dir`` was trained on."""
    if data:
        return data
    saved = run_config(model_dir)
    if saved is None:
        raise ConfigError(
            f"{model_dir} records no manifest (no {RUN_CONFIG} beside its model): pass --data"
        )
    return saved.data.manifest


def _initial_model(
    config: ExperimentConfig, train_rows: Manifest, out_dir: Path, resume: bool
) -> JointModel:
    # On resume the tokenizer comes from the checkpoint, never retrained.
    latest = ckpt.latest_checkpoint(out_dir / "checkpoints") if resume else None
    if latest is not None:
        return build_model(config.model, assets_dir=latest)
    corpus = train_rows.column("text") if "text" in train_rows.columns else None
    return build_model(config.model, corpus=corpus)


def evaluate_model(
    model: JointModel,
    manifest: Manifest,
    config: EvalConfig | None = None,
    modalities: Sequence[str] | None = None,
) -> dict[str, float]:
    """Retrieval metrics of ``model`` on ``manifest`` in both directions."""
    config = config or EvalConfig()
    if modalities is None:
        modalities = [m for m in model.modalities if m in manifest.modalities]
    if len(modalities) != 2:
        raise ConfigError(f"retrieval needs exactly two modalities, got {list(modalities)}")
    return evaluate_retrieval(
        model,
        manifest,
        modalities=modalities,
        relevance=config.relevance,
        ks=config.ks,
        batch_size=config.batch_size,
    )


def load_trained(model_dir: str | Path) -> JointModel:
    """A saved model that reads frozen towers' features from the cache its run used."""
    model = load(model_dir)
    saved = run_config(model_dir)
    model.feature_cache = FeatureCache.from_setting(saved.train.feature_cache if saved else "auto")
    return model


def run_config(model_dir: str | Path) -> ExperimentConfig | None:
    """The experiment config saved beside a trained model, if it came from ``fit``."""
    model_dir = Path(model_dir)
    for candidate in (model_dir / RUN_CONFIG, model_dir.parent / RUN_CONFIG):
        if candidate.is_file():
            return ExperimentConfig.from_yaml(candidate)
    return None


def fit_reranker(
    model_dir: str | Path,
    config: RerankConfig | None = None,
    *,
    manifest: str | Path | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Train a matcher on top of a trained model and save it in ``MODEL_DIR/matcher``.

    Trained on the run's train split; the epoch and the weight of the bi-encoder's score in the
    final score are chosen on its val split; the returned (and saved) metrics compare the
    bi-encoder alone with re-ranking on val and test.
    """
    model = load_trained(model_dir)
    saved = run_config(model_dir)
    if saved is None and manifest is None:
        raise ConfigError(
            f"no {RUN_CONFIG} beside {model_dir} to say what it was trained on: "
            "pass the manifest (--data)"
        )
    saved = saved or ExperimentConfig()
    config = config or saved.rerank
    data = saved.data
    modalities = [m for m in data.modalities if m in model.modalities]
    full = load_manifest(manifest or data.manifest, modalities, skip_bad=data.skip_bad)
    named = {"train": data.train_split, "val": data.val_split, "test": data.test_split}
    splits = {k: full.split(s) for k, s in named.items() if s is not None and s in full.splits()}
    if "train" not in splits:
        raise ManifestError(f"no {data.train_split!r} split in {full.path} to train a re-ranker on")
    train_set = matching_set(model, splits.pop("train"), modalities)
    scored = {
        k: matching_set(model, m, modalities, saved.eval.relevance) for k, m in splits.items()
    }

    scale = float(model.logit_scale.detach().exp())

    def validate(matcher: CrossModalMatcher) -> float:
        return fit_prior_weight(matcher, scored["val"], config.candidates, scale, saved.eval.ks)

    fit = fit_matcher(train_set, config, evaluator=validate if "val" in scored else None)
    if "val" not in scored:  # nothing to choose the blend on: weigh both scores alike
        fit.matcher.prior_weight.fill_(scale)
    metrics = {
        split: {
            "bi_encoder": rerank_metrics(None, s, config.candidates, saved.eval.ks),
            "reranked": rerank_metrics(fit.matcher, s, config.candidates, saved.eval.ks),
        }
        for split, s in scored.items()
    }
    fit.matcher.config.model_fingerprint = model_fingerprint(model_dir)
    target = resolve_model_dir(model_dir) / MATCHER_DIR
    save_matcher(fit.matcher, target, {"candidates": config.candidates, **metrics})
    return metrics
