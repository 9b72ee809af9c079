"""``jointspace demo``: build digits, train on CPU, evaluate on test, show text→image searches."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from jointspace.config import ExperimentConfig, builtin_config
from jointspace.data import build_dataset
from jointspace.embed import search_manifest
from jointspace.evaluate.report import metrics_table
from jointspace.evaluate.retrieval import chance_retrieval
from jointspace.models import load
from jointspace.pipeline import RUN_CONFIG, evaluate_model, fit, load_manifest

QUERIES = ("a handwritten seven", "the digit 3", "the number zero", "a scanned 5")


def run_demo(out_dir: Path, *, epochs: int | None = None, console: Console | None = None) -> dict:
    """Run the whole pipeline on the built-in ``digits`` data and print what it learned."""
    console = console or Console()
    started = time.perf_counter()
    manifest_path = build_dataset("digits")
    config = ExperimentConfig.from_yaml(builtin_config("digits"))
    config.train.epochs = epochs or config.train.epochs
    if (out_dir / RUN_CONFIG).is_file():
        shutil.rmtree(out_dir)  # a previous demo run: the demo always starts fresh
    console.print(f"[bold]jointspace demo[/]: digits → {manifest_path}\ntraining into {out_dir}")
    fit(config, out_dir, manifest=manifest_path)
    model = load(out_dir)
    test = load_manifest(manifest_path, config.data.modalities, split=config.data.test_split)
    metrics = evaluate_model(model, test, config.eval)
    chance = chance_retrieval(
        test, modalities=config.data.modalities, relevance=config.eval.relevance, ks=config.eval.ks
    )
    title = f"test split ({len(test)} rows, relevance={config.eval.relevance}), in %"
    console.print(metrics_table(metrics, title))
    console.print(metrics_table(chance, "chance: random scores, same queries"))
    results = search_manifest(model, test, list(QUERIES), "image", 5)
    for query, hits in zip(QUERIES, results, strict=True):
        console.print(_hits_line(query, hits))
    console.print(f"done in {time.perf_counter() - started:.0f} s; model in {out_dir / 'model'}")
    return metrics


def _hits_line(query: str, hits) -> Table:
    table = Table.grid(padding=(0, 2))
    labels = "  ".join(f"{h.label} ({h.score:.2f})" for h in hits)
    table.add_row(f"[bold]{query!r}[/] → top-5 labels:", labels)
    return table
