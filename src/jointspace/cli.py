"""The ``jointspace`` command line: one command, one function over the layers below."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from jointspace.cli_data import app as data_app
from jointspace.cli_errors import user_errors
from jointspace.cli_index import app as index_app
from jointspace.cli_options import Data, ModelDir, Query, TopK
from jointspace.config import ExperimentConfig

app = typer.Typer(
    help="Learn, evaluate and search joint embedding spaces.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()
app.add_typer(data_app, name="data")
app.add_typer(index_app, name="index")

Split = Annotated[str | None, typer.Option(help="Keep only rows of this split.")]
SkipBad = Annotated[bool, typer.Option("--skip-bad", help="Report and skip bad rows.")]
JsonOut = Annotated[Path | None, typer.Option("--json", help="Write metrics JSON here.")]


@app.command()
@user_errors
def train(
    config: Annotated[Path, typer.Argument(help="Experiment YAML, e.g. configs/digits.yaml.")],
    data: Annotated[str | None, typer.Option(help="Override the config's manifest.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory.")] = Path("runs/latest"),
    epochs: Annotated[int | None, typer.Option(help="Override train.epochs.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Override train.max_steps.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the latest checkpoint.")] = False,
    skip_bad: SkipBad = False,
) -> None:
    """Train a joint embedding model from a YAML config."""
    from jointspace.pipeline import fit

    cfg = ExperimentConfig.from_yaml(config)
    cfg.data.skip_bad = cfg.data.skip_bad or skip_bad
    cfg.train.epochs = epochs if epochs is not None else cfg.train.epochs
    cfg.train.max_steps = max_steps if max_steps is not None else cfg.train.max_steps
    result = fit(cfg, out_dir, manifest=data, resume=resume)
    best = (
        f" (best {result.best['primary']:.3f} at step {result.best['step']})" if result.best else ""
    )
    console.print(f"trained {result.steps} steps → {result.model_dir}{best}")


@app.command()
@user_errors
def compare(
    config: Annotated[Path, typer.Argument(help="Experiment YAML shared by every run.")],
    objectives: Annotated[
        str, typer.Option(help="Comma-separated: clip,siglip,triplet-sum,triplet-max,cca,dcca")
    ] = "clip,siglip,triplet-sum,triplet-max,cca,dcca",
    data: Annotated[str | None, typer.Option(help="Override the config's manifest.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory of runs.")] = Path(
        "runs/compare"
    ),
    epochs: Annotated[int | None, typer.Option(help="Override train.epochs.")] = None,
) -> None:
    """Train one config with each objective (same towers, data, seed, budget); tabulate."""
    from jointspace.compare import compare as run_compare
    from jointspace.compare import markdown_table

    cfg = ExperimentConfig.from_yaml(config)
    cfg.train.epochs = epochs if epochs is not None else cfg.train.epochs
    names = [n.strip() for n in objectives.split(",") if n.strip()]
    rows = run_compare(cfg, names, out_dir, manifest=data, log=console.print)
    out.print(markdown_table(rows, cfg.data.modalities))
    console.print(f"table → {out_dir / 'compare.md'}, {out_dir / 'compare.json'}")


@app.command("eval")
@user_errors
def eval_command(
    model_dir: ModelDir,
    data: Data,
    split: Split = "test",
    relevance: Annotated[str | None, typer.Option(help="pairs | label (default: run's)")] = None,
    json_path: JsonOut = None,
    skip_bad: SkipBad = False,
) -> None:
    """Evaluate retrieval in both directions (Recall@K, mAP, median rank)."""
    from jointspace.atomic import write_text_atomic
    from jointspace.config import EvalConfig
    from jointspace.evaluate.report import metrics_table
    from jointspace.pipeline import evaluate_model, load_manifest, load_trained, run_config

    model = load_trained(model_dir)
    saved = run_config(model_dir)
    eval_cfg = saved.eval if saved else EvalConfig()
    eval_cfg.relevance = relevance or eval_cfg.relevance
    manifest = load_manifest(data, model.modalities, split=split, skip_bad=skip_bad)
    metrics = evaluate_model(model, manifest, eval_cfg)
    out.print(metrics_table(metrics, f"{split or 'all'} split, relevance={eval_cfg.relevance}"))
    if json_path:
        write_text_atomic(json_path, json.dumps(metrics, indent=2))


@app.command()
@user_errors
def zeroshot(
    model_dir: ModelDir,
    data: Data,
    split: Split = "zeroshot",
    modality: Annotated[str, typer.Option(help="Modality to classify.")] = "image",
    template: Annotated[
        list[str] | None, typer.Option(help="Prompt with {} for the class name; repeatable.")
    ] = None,
    json_path: JsonOut = None,
) -> None:
    """Zero-shot classification: each item against text prompts built from the labels."""
    from jointspace.atomic import write_text_atomic
    from jointspace.evaluate.zeroshot import TEMPLATES, evaluate_zero_shot
    from jointspace.pipeline import load_manifest, load_trained

    model = load_trained(model_dir)
    manifest = load_manifest(data, [modality], split=split)
    result = evaluate_zero_shot(model, manifest, modality=modality, templates=template or TEMPLATES)
    metrics = {k: round(100 * v, 2) for k, v in result.metrics.items()}
    out.print(f"{len(result.labels)} classes, {split or 'all'} split: {metrics} (%)")
    if json_path:
        payload = {"metrics": result.metrics, "per_class": result.per_class}
        write_text_atomic(json_path, json.dumps(payload, indent=2))


@app.command()
@user_errors
def report(
    model_dir: ModelDir,
    data: Data,
    out_dir: Annotated[Path, typer.Option("--out", help="Report directory.")] = Path("report"),
    split: Split = "test",
    zeroshot_split: Annotated[
        str | None, typer.Option(help="Held-out split for zero-shot (if present).")
    ] = "zeroshot",
    relevance: Annotated[str | None, typer.Option(help="pairs | label (default: run's)")] = None,
    map_method: Annotated[str, typer.Option("--map", help="2-D map: pca | tsne.")] = "pca",
) -> None:
    """Write an HTML report: metrics, Recall@K, zero-shot, probe, geometry, maps, failures."""
    from jointspace.models.io import resolve_model_dir
    from jointspace.pipeline import load_manifest, load_trained, run_config
    from jointspace.report import build_report

    model = load_trained(model_dir)
    saved = run_config(model_dir)
    relevance = relevance or (saved.eval.relevance if saved else "pairs")
    manifest = load_manifest(data, model.modalities)
    run_dir = resolve_model_dir(model_dir).parent
    build_report(
        model,
        manifest,
        out_dir,
        split=split,
        zeroshot_split=zeroshot_split,
        modalities=model.modalities[:2],
        relevance=relevance,
        run_dir=run_dir,
        map_method=map_method,
    )
    console.print(f"report → {out_dir / 'index.html'}")


@app.command()
@user_errors
def rerank(
    model_dir: ModelDir,
    data: Annotated[str | None, typer.Option(help="Override the run's manifest.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override rerank.epochs.")] = None,
    candidates: Annotated[
        int | None, typer.Option(help="Bi-encoder results re-scored per query.")
    ] = None,
    json_path: JsonOut = None,
) -> None:
    """Train a cross-modal matcher that re-ranks the model's top results (MODEL_DIR/matcher)."""
    from jointspace.atomic import write_text_atomic
    from jointspace.evaluate.report import rerank_table
    from jointspace.pipeline import fit_reranker, run_config

    saved = run_config(model_dir) or ExperimentConfig()
    cfg = saved.rerank
    cfg.epochs = epochs if epochs is not None else cfg.epochs
    cfg.candidates = candidates if candidates is not None else cfg.candidates
    metrics = fit_reranker(model_dir, cfg, manifest=data)
    for split, stages in metrics.items():
        out.print(rerank_table(stages, f"{split} split, top {cfg.candidates} re-ranked"))
    if json_path:
        write_text_atomic(json_path, json.dumps(metrics, indent=2))


@app.command()
@user_errors
def embed(
    model_dir: ModelDir,
    data: Data,
    modality: Annotated[str, typer.Option(help="Which column to embed.")] = "image",
    out_path: Annotated[Path, typer.Option("--out", help="Output Parquet file.")] = Path(
        "embeddings.parquet"
    ),
    split: Split = None,
    skip_bad: SkipBad = False,
) -> None:
    """Embed the unique values of one modality into a Parquet file."""
    from jointspace.embed import embed_manifest, write_embeddings
    from jointspace.pipeline import load_manifest, load_trained

    model = load_trained(model_dir)
    manifest = load_manifest(data, [modality], split=split, skip_bad=skip_bad)
    table = embed_manifest(model, manifest, modality)
    write_embeddings(table, out_path)
    console.print(f"wrote {table.num_rows} {modality} embeddings → {out_path}")


@app.command()
@user_errors
def search(
    model_dir: ModelDir,
    data: Data,
    query: Query,
    k: TopK = 5,
    target: Annotated[str, typer.Option(help="Modality to search.")] = "image",
    split: Split = None,
) -> None:
    """Brute-force search a manifest's items with a text query."""
    from jointspace.embed import results_table, search_manifest
    from jointspace.pipeline import load_manifest, load_trained

    model = load_trained(model_dir)
    manifest = load_manifest(data, ["text", target], split=split)
    hits = search_manifest(model, manifest, [query], target, k)[0]
    out.print(results_table(query, hits))


@app.command()
@user_errors
def serve(
    model_dir: ModelDir,
    index: Annotated[str, typer.Option("--index", help="Index URI built by `index build`.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one).", min=0, max=65535)] = 8000,
) -> None:
    """Serve the REST API (/search, /items, /media, /health, /docs) and the search page.

    Each request is logged to stderr as one JSON line (method, path, status, ms, client).
    """
    from jointspace.serve import create_app
    from jointspace.serve.listen import bind_port, run_on

    # Bind first: a busy port fails at once, before loading anything or announcing a URL.
    sock = bind_port(host, port)
    with sock:
        application = create_app(model_dir, index)
        bound = sock.getsockname()[1]
        console.print(
            f"serving {index} with {model_dir} on http://{host}:{bound}",
            soft_wrap=True,
            highlight=False,
        )
        run_on(sock, application)


@app.command()
@user_errors
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory.")] = Path("runs/demo"),
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Built-in dataset: emoji, digits or spoken-digits "
            "(default: emoji when pretrained, else digits)."
        ),
    ] = None,
    pretrained: Annotated[
        bool | None,
        typer.Option(
            "--pretrained/--scratch",
            help="Locked EfficientNet-Lite0 + MiniLM towers, or towers from scratch "
            "(default: pretrained when their packages are installed).",
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the demo's epochs.")] = None,
    grid: Annotated[Path | None, typer.Option(help="Save the query results as a PNG grid.")] = None,
    serve: Annotated[
        bool, typer.Option(help="End by serving a search page over the data.")
    ] = False,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 8000,
) -> None:
    """Build a built-in dataset, train on CPU, evaluate the test split, show a few searches."""
    from jointspace.demo import run_demo

    run_demo(out_dir, dataset=dataset, pretrained=pretrained, epochs=epochs, grid=grid, console=out)
    if serve:
        from jointspace.demo import serve_demo

        serve_demo(out_dir, port)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    app()


if __name__ == "__main__":
    main()
