"""``jointspace compare``: train one config under several objectives and tabulate the results."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from jointspace.atomic import write_text_atomic
from jointspace.config import ExperimentConfig, ObjectiveConfig, dumps_json
from jointspace.data import load_manifest
from jointspace.errors import UnknownNameError
from jointspace.evaluate.retrieval import evaluate_model
from jointspace.models.build import build_model
from jointspace.models.feature_cache import FeatureCache
from jointspace.models.io import save_model
from jointspace.registry import available
from jointspace.report.markdown import markdown_table as markdown_rows
from jointspace.report.markdown import relevance_note
from jointspace.runs.fit import fit, manifest_spec
from jointspace.runs.run import RUN_CONFIG, Run
from jointspace.train.closed_form import fit_linear_cca

# Names the table uses for objectives with settings; any registered objective name works too.
PRESETS = {
    "triplet-sum": [ObjectiveConfig("triplet", {"reduction": "sum"})],
    "triplet-max": [ObjectiveConfig("triplet", {"reduction": "max"})],
}
CLOSED_FORM = ("cca",)


def objectives_for(name: str) -> list[ObjectiveConfig]:
    """The objective list a table row trains with; a clear error for unknown names."""
    if name in PRESETS:
        return copy.deepcopy(PRESETS[name])
    known = sorted({*PRESETS, *CLOSED_FORM, *available("objective")})
    if name not in available("objective"):
        raise UnknownNameError(f"unknown objective {name!r}; known: {', '.join(known)}")
    return [ObjectiveConfig(name)]


def compare(
    config: ExperimentConfig,
    names: Sequence[str],
    out_dir: str | Path,
    *,
    manifest: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Same towers, data, seed and budget for every objective; writes compare.{md,json}."""
    out_dir = Path(out_dir)
    for name in names:  # fail on a typo before hours of training, not after
        if name not in CLOSED_FORM:
            objectives_for(name)
    spec = manifest or config.data.manifest
    test = load_manifest(spec, config.data.modalities, split=config.data.test_split)
    rows = []
    for name in names:
        started = time.perf_counter()
        run_dir = out_dir / name
        model = _train(config, name, run_dir, spec)
        seconds = time.perf_counter() - started
        metrics = evaluate_model(model, test, config.eval, config.data.modalities)
        rows.append({"objective": name, "train_seconds": seconds, **metrics})
        log(f"{name}: mean recall {100 * metrics['primary']:.1f}% in {seconds:.0f} s")
    write_text_atomic(out_dir / "compare.json", dumps_json(rows))
    write_text_atomic(out_dir / "compare.md", markdown_table(rows, config.data.modalities))
    return rows


def _train(config: ExperimentConfig, name: str, run_dir: Path, spec: str | Path):
    config = copy.deepcopy(config)
    if name not in CLOSED_FORM:
        config.objectives = objectives_for(name)
        fit(config, run_dir, manifest=spec)
        model = Run.open(run_dir).model
        if name == "dcca":  # deep CCA's embeddings are correlated, not aligned: add linear CCA
            train = load_manifest(spec, config.data.modalities, split=config.data.train_split)
            fit_linear_cca(model, train, _pair(config), after_head=True)
            save_model(model, run_dir / "model")
        return model
    # Linear CCA: the same initial towers, heads solved in closed form on the train split.
    train = load_manifest(spec, config.data.modalities, split=config.data.train_split)
    torch.manual_seed(config.train.seed)
    # Absent (empty) texts are no text: the tokenizer's corpus is the texts there are.
    corpus = [t for t in train.column("text") if t.strip()] if "text" in train.columns else None
    model = build_model(config.model, corpus=corpus).eval()
    # Frozen towers' features come from the cache training uses: a rerun runs no backbone.
    cache = FeatureCache.from_setting(config.train.feature_cache)
    model.feature_cache = cache
    fit_linear_cca(model, train, _pair(config))
    save_model(model, run_dir / "model")
    # Recorded like a trained run's, so eval, embed and index commands find its data.
    config.data.manifest = manifest_spec(spec)
    write_text_atomic(run_dir / RUN_CONFIG, config.to_yaml())
    return Run.open(run_dir).model


def _pair(config: ExperimentConfig) -> tuple[str, str]:
    a, b = config.data.modalities  # CCA relates exactly two views
    return a, b


def markdown_table(rows: list[dict[str, Any]], modalities: Sequence[str]) -> str:
    """One row per objective: recall and mAP in both directions (%), and training time; a last
    row with the exact chance level, and a line naming the relevance."""
    a, b = modalities
    directions = (f"{a}_to_{b}", f"{b}_to_{a}")
    # The recalls the runs measured (eval.ks: R@1/5/10 by default), then mAP.
    first = directions[0] + "/"
    recalls = {key[len(first) :] for key in (rows[0] if rows else {}) if key.startswith(first)}
    columns = (*sorted((c for c in recalls if c.startswith("R@")), key=lambda c: int(c[2:])), "mAP")
    header = ["objective"]
    header += [f"{d.replace('_to_', '→')} {c}" for d in directions for c in columns]
    header.append("train s")
    body = [
        [row["objective"]]
        + [f"{100 * row[f'{d}/{c}']:.1f}" for d in directions for c in columns]
        + [f"{row['train_seconds']:.0f}"]
        for row in rows
    ]
    if rows and all(f"{d}/chance_{c}" in rows[0] for d in directions for c in columns):
        chance = [f"{100 * rows[0][f'{d}/chance_{c}']:.1f}" for d in directions for c in columns]
        body.append(["chance", *chance, "-"])
    note = relevance_note(rows[0]) if rows else ""
    return markdown_rows(header, body) + "\n" + (f"\n{note}\n" if note else "")
