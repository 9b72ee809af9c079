"""Shared by the benchmarks: train a config, then score it on the held-out ``zeroshot`` split."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from jointspace.config import ExperimentConfig
from jointspace.data import build_dataset, load_manifest
from jointspace.evaluate.retrieval import chance_retrieval, evaluate_model
from jointspace.evaluate.zeroshot import ZeroShotResult, evaluate_zero_shot
from jointspace.runs import load
from jointspace.runs.fit import fit


@dataclass
class HeldOutScores:
    """Wall-clock of ``fit``, zero-shot result, retrieval metrics and their chance level."""

    seconds: float
    zero_shot: ZeroShotResult
    retrieval: dict[str, float]
    chance: dict[str, float]


def train_and_score(config: ExperimentConfig, dataset: str, run_dir: Path) -> HeldOutScores:
    """Fit ``config`` on the built-in ``dataset`` into ``run_dir``; score its zeroshot split."""
    manifest = build_dataset(dataset)
    started = time.perf_counter()
    fit(config, run_dir, manifest=manifest)
    seconds = time.perf_counter() - started
    model = load(run_dir)
    held_out = load_manifest(manifest, config.data.modalities, split="zeroshot")
    return HeldOutScores(
        seconds,
        evaluate_zero_shot(model, held_out),
        evaluate_model(model, held_out, config.eval),
        chance_retrieval(held_out, relevance=config.eval.relevance),
    )
