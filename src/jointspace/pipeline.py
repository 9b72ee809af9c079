"""Experiments from a config: build data, model and objective, then train or evaluate."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch

from jointspace.atomic import write_text_atomic
from jointspace.config import EvalConfig, ExperimentConfig, RerankConfig
from jointspace.data import Manifest, PairedDataset, read_manifest, resolve_manifest
from jointspace.evaluate.rerank import fit_prior_weight, matching_set, rerank_metrics
from jointspace.evaluate.retrieval import evaluate_retrieval
from jointspace.models.build import build_model
from jointspace.models.feature_cache import FeatureCache
from jointspace.models.io import load, model_fingerprint, resolve_model_dir
from jointspace.models.joint import JointModel
from jointspace.models.matcher import MATCHER_DIR, CrossModalMatcher, save_matcher
from jointspace.objectives.combined import build_objective
from jointspace.train import checkpoint as ckpt
from jointspace.train.matcher import fit_matcher
from jointspace.train.trainer import Callback, Trainer, TrainResult

RUN_CONFIG = "config.yaml"


def load_manifest(
    spec: str | Path, modalities: Sequence[str], *, split: str | None = None, skip_bad: bool = False
) -> Manifest:
    """Resolve a path or ``builtin:NAME``, validate it and keep one split (all rows if None)."""
    manifest = read_manifest(resolve_manifest(spec), required=modalities, skip_bad=skip_bad)
    return manifest.split(split) if split else manifest


def fit(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    manifest: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train ``config`` into ``out_dir``; the selected model ends up in ``out_dir/model``."""
    data = config.data
    full = load_manifest(manifest or data.manifest, data.modalities, skip_bad=data.skip_bad)
    train_rows = full.split(data.train_split) if data.train_split else full
    has_val = data.val_split is not None and data.val_split in full.splits()
    out_dir = Path(out_dir)
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
    trainer = Trainer(
        model,
        objective,
        config.train,
        out_dir,
        evaluator=evaluator,
        callbacks=callbacks,
        feature_cache=model.feature_cache,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_text_atomic(out_dir / RUN_CONFIG, config.to_yaml())
    return trainer.fit(dataset, resume=resume)


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
        raise ValueError(f"retrieval needs exactly two modalities, got {list(modalities)}")
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
        raise ValueError(
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
        raise ValueError(f"no {data.train_split!r} split in {full.path} to train a re-ranker on")
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
