"""``train_matcher``: a run's second stage, trained on its splits and saved beside its model."""

from __future__ import annotations

from pathlib import Path

from jointspace.config import ConfigError, RerankConfig
from jointspace.data import ManifestError
from jointspace.matcher import (
    MATCHER_DIR,
    CrossModalMatcher,
    MatchingSet,
    fit_matcher,
    fit_prior_weight,
    matching_set,
    rerank_metrics,
    save_matcher,
)
from jointspace.runs.run import RUN_CONFIG, Run


def train_matcher(
    run: Run,
    config: RerankConfig | None = None,
    *,
    data: str | Path | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Train a matcher on top of ``run``'s model and save it in ``MODEL_DIR/matcher``.

    Trained on the run's train split; the epoch and the weight of the bi-encoder's score in the
    final score are chosen on its val split; the returned (and saved) metrics compare the
    bi-encoder alone with re-ranking on val and test.
    """
    if not run.recorded and data is None:
        raise ConfigError(
            f"no {RUN_CONFIG} beside {run.model_dir} to say what it was trained on: "
            "pass the manifest (--data)"
        )
    config = config or run.config.rerank
    model, splits_of, ks = run.model, run.config.data, run.config.eval.ks
    modalities = [m for m in splits_of.modalities if m in model.modalities]
    full = run.manifest(data, modalities=modalities)
    named = {
        "train": splits_of.train_split,
        "val": splits_of.val_split,
        "test": splits_of.test_split,
    }
    splits = {k: full.split(s) for k, s in named.items() if s is not None and s in full.splits()}
    if "train" not in splits:
        raise ManifestError(
            f"no {splits_of.train_split!r} split in {full.path} to train a re-ranker on"
        )
    train_set = matching_set(model, splits.pop("train"), modalities)
    relevance = run.config.eval.relevance
    scored = {k: matching_set(model, m, modalities, relevance) for k, m in splits.items()}

    scale = float(model.logit_scale.detach().exp())

    def validate(matcher: CrossModalMatcher) -> float:
        return fit_prior_weight(matcher, scored["val"], config.candidates, scale, ks)

    fit = fit_matcher(train_set, config, evaluator=validate if "val" in scored else None)
    if "val" not in scored:  # nothing to choose the blend on: weigh both scores alike
        fit.matcher.prior_weight.fill_(scale)
    metrics = {
        split: {
            "bi_encoder": rerank_metrics(None, s, config.candidates, ks) | _left_out(s),
            "reranked": rerank_metrics(fit.matcher, s, config.candidates, ks) | _left_out(s),
        }
        for split, s in scored.items()
    }
    fit.matcher.config.model_fingerprint = run.fingerprint
    save_matcher(
        fit.matcher, run.model_dir / MATCHER_DIR, {"candidates": config.candidates, **metrics}
    )
    return metrics


def _left_out(data: MatchingSet) -> dict[str, float]:
    """``{"rows_left_out": n}`` when rows lacking a modality were not scored, else nothing."""
    return {"rows_left_out": data.left_out} if data.left_out else {}
