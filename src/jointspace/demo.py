"""``jointspace demo``: build a built-in dataset, train on CPU, evaluate, search text→image."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from jointspace.config import ExperimentConfig, builtin_config
from jointspace.data import build_dataset
from jointspace.embed import Hit, search_manifest
from jointspace.evaluate.report import metrics_table
from jointspace.evaluate.retrieval import chance_retrieval
from jointspace.pipeline import RUN_CONFIG, evaluate_model, fit, load_manifest, load_trained

QUERIES = {
    "digits": ("a handwritten seven", "the digit 3", "the number zero", "a scanned 5"),
    "emoji": ("red sneakers", "a fruit", "a vehicle on rails", "a smiling face", "a flag"),
}
EXTRA_SPLITS = ("zeroshot",)  # held-out classes or subgroups, reported when a dataset has them


def run_demo(
    out_dir: Path,
    *,
    dataset: str = "digits",
    epochs: int | None = None,
    grid: Path | None = None,
    console: Console | None = None,
) -> dict[str, dict[str, float]]:
    """Run the whole pipeline on a built-in dataset and print what it learned, per split."""
    console = console or Console()
    started = time.perf_counter()
    manifest_path = build_dataset(dataset)
    config = ExperimentConfig.from_yaml(builtin_config(dataset))
    config.train.epochs = epochs or config.train.epochs
    if (out_dir / RUN_CONFIG).is_file():
        shutil.rmtree(out_dir)  # a previous demo run: the demo always starts fresh
    console.print(f"[bold]jointspace demo[/]: {dataset} → {manifest_path}\ntraining into {out_dir}")
    fit(config, out_dir, manifest=manifest_path)
    model = load_trained(out_dir)
    full = load_manifest(manifest_path, config.data.modalities)
    results = {}
    for split in (config.data.test_split, *[s for s in EXTRA_SPLITS if s in full.splits()]):
        part = full.split(split)
        results[split] = metrics = evaluate_model(model, part, config.eval)
        chance = chance_retrieval(
            part,
            modalities=config.data.modalities,
            relevance=config.eval.relevance,
            ks=config.eval.ks,
        )
        title = f"{split} split ({len(part)} rows, relevance={config.eval.relevance}), in %"
        console.print(metrics_table(metrics, title))
        console.print(metrics_table(chance, f"chance on the {split} split: random scores"))
    # The whole catalogue, as a user would search it; each hit says which split it came from.
    queries = list(QUERIES.get(dataset, ()))
    results_per_query = search_manifest(model, full, queries, "image", 5)
    for query, hits in zip(queries, results_per_query, strict=True):
        console.print(_hits_line(query, hits))
    if grid is not None:
        from jointspace.evaluate.grid import save_grid

        save_grid(grid, queries, results_per_query, full)
        console.print(f"query grid → {grid}")
    console.print(f"done in {time.perf_counter() - started:.0f} s; model in {out_dir / 'model'}")
    return results


def _hits_line(query: str, hits: list[Hit]) -> Table:
    table = Table.grid(padding=(0, 2))
    labels = "  ".join(f"{h.label} ({h.score:.2f}, {h.split})" for h in hits)
    table.add_row(f"[bold]{query!r}[/] → top-5 labels:", labels)
    return table


def serve_demo(out_dir: Path, dataset: str = "digits", port: int = 8000) -> None:
    """Index the demo dataset's images with the demo model and serve the search page."""
    import uvicorn

    from jointspace.data import read_manifest
    from jointspace.index.build import build_index
    from jointspace.serve import create_app

    uri = f"faiss://{out_dir / 'index'}"
    manifest = read_manifest(build_dataset(dataset))
    build_index(load_trained(out_dir), out_dir, manifest, "image", uri).close()
    print(f"search page: http://127.0.0.1:{port}  (Ctrl-C stops it)")
    uvicorn.run(create_app(out_dir, uri), host="127.0.0.1", port=port, log_level="warning")
