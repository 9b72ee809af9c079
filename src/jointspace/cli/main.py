"""The ``jointspace`` command line: one command, one function over the layers below.

Importing this module imports no torch/numpy: every command imports what it needs in its body,
so ``jointspace --help`` is fast. Outputs follow one rule (see ``runs.outputs``): an existing
output is refused unless --force, and --force replaces only what the same command wrote.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from jointspace.cli.classify import classify, predict
from jointspace.cli.data import app as data_app
from jointspace.cli.demo import demo
from jointspace.cli.errors import user_errors
from jointspace.cli.export import export
from jointspace.cli.index import app as index_app
from jointspace.cli.mvae import generate, mvae
from jointspace.cli.options import (
    Force,
    ModelDir,
    Query,
    RunData,
    RunStreamData,
    Sets,
    SkipBad,
    TopK,
)
from jointspace.cli.train import compare, train
from jointspace.runs.outputs import OutputExistsError, claim_dir, claim_file, mark_dir

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
ClassNames = Annotated[
    str,
    typer.Option(
        help="How labels become class names in prompts: leaf (shapes/star_icons → 'star icons'), "
        "path, or a JSON/YAML file mapping each label to its name."
    ),
]
JsonOut = Annotated[
    Path | None,
    typer.Option("--json", help="Write metrics JSON here (an existing file needs --force)."),
]


class _Stderr(logging.StreamHandler):
    """A handler bound to whatever ``sys.stderr`` is when a record comes (tests swap it)."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass  # always the current sys.stderr


@app.callback()
def _setup() -> None:
    """Learn, evaluate and search joint embedding spaces."""
    # Progress lines (epochs, evaluations, embedding) reach stderr even when it is a file or pipe.
    logger = logging.getLogger("jointspace")
    logger.setLevel(logging.INFO)
    if not logger.handlers:  # one handler: jointspace.progress may have installed its own
        logger.addHandler(_Stderr())


app.command()(user_errors(train))
app.command()(user_errors(compare))
app.command()(user_errors(export))
app.command()(classify), app.command()(predict)
app.command()(mvae), app.command()(generate)


@app.command("eval")
@user_errors
def eval_command(
    model_dir: ModelDir,
    data: RunData = None,
    split: Split = "test",
    relevance: Annotated[str | None, typer.Option(help="pairs | label (default: run's)")] = None,
    json_path: JsonOut = None,
    skip_bad: SkipBad = False,
    force: Force = False,
    sets: Sets = None,
) -> None:
    """Evaluate retrieval in every direction (Recall@K, mAP, median rank)."""
    from jointspace.atomic import write_text_atomic
    from jointspace.cli.tables import metrics_table
    from jointspace.evaluate import evaluate_model
    from jointspace.runs import Run

    if json_path:
        claim_file(json_path, force)
    run = Run.open(model_dir, sets or ())
    eval_cfg = run.config.eval
    eval_cfg.relevance = relevance or eval_cfg.relevance
    model = run.model
    manifest = run.manifest(data, modalities=model.modalities, split=split, skip_bad=skip_bad)
    metrics = evaluate_model(model, manifest, eval_cfg)
    out.print(metrics_table(metrics, f"{split or 'all'} split, relevance={eval_cfg.relevance}"))
    if json_path:
        write_text_atomic(json_path, json.dumps(metrics, indent=2))


@app.command()
@user_errors
def zeroshot(
    model_dir: ModelDir,
    data: RunData = None,
    split: Split = "zeroshot",
    modality: Annotated[str, typer.Option(help="Modality to classify.")] = "image",
    template: Annotated[
        list[str] | None, typer.Option(help="Prompt with {} for the class name; repeatable.")
    ] = None,
    class_names: ClassNames = "leaf",
    json_path: JsonOut = None,
    force: Force = False,
    sets: Sets = None,
) -> None:
    """Zero-shot classification: each item against text prompts built from the labels."""
    from jointspace.atomic import write_text_atomic
    from jointspace.evaluate.zeroshot import TEMPLATES, evaluate_zero_shot
    from jointspace.runs import Run

    if json_path:
        claim_file(json_path, force)
    run = Run.open(model_dir, sets or ())
    manifest = run.manifest(data, modalities=[modality], split=split, skip_bad=False)
    result = evaluate_zero_shot(
        run.model, manifest, modality=modality, templates=template or TEMPLATES, names=class_names
    )
    metrics = {k: round(100 * v, 2) for k, v in result.metrics.items()}
    out.print(
        f"{len(result.labels)} classes, {split or 'all'} split ({result.naming} class names): "
        f"{metrics} (%)"
    )
    if result.excluded_items:
        out.print(f"{result.excluded_items} items with more than one label left out")
    if json_path:
        payload = {
            "metrics": result.metrics,
            "per_class": result.per_class,
            "naming": result.naming,
            "class_names": result.class_names,
            "excluded_items": result.excluded_items,
        }
        write_text_atomic(json_path, json.dumps(payload, indent=2))


@app.command()
@user_errors
def report(
    model_dir: ModelDir,
    data: RunData = None,
    out_dir: Annotated[
        Path,
        typer.Option("--out", help="Report directory (new or empty; --force replaces a report)."),
    ] = Path("report"),
    split: Split = "test",
    zeroshot_split: Annotated[
        str | None, typer.Option(help="Held-out split for zero-shot (if present).")
    ] = "zeroshot",
    relevance: Annotated[str | None, typer.Option(help="pairs | label (default: run's)")] = None,
    map_method: Annotated[str, typer.Option("--map", help="2-D map: pca | tsne.")] = "pca",
    class_names: ClassNames = "leaf",
    force: Force = False,
    sets: Sets = None,
) -> None:
    """Write an HTML report: metrics, Recall@K, zero-shot, probe, geometry, maps, failures."""
    from jointspace.report import build_report
    from jointspace.runs import Run

    claim_dir(out_dir, "report", force)
    run = Run.open(model_dir, sets or ())
    model = run.model
    manifest = run.manifest(data, modalities=model.modalities, skip_bad=False)
    build_report(  # replaces out_dir atomically: a failure leaves the earlier report
        model,
        manifest,
        out_dir,
        split=split,
        zeroshot_split=zeroshot_split,
        modalities=model.modalities,
        relevance=relevance or run.config.eval.relevance,
        run_dir=run.dir,
        map_method=map_method,
        class_names=class_names,
    )
    mark_dir(out_dir, "report")
    console.print(f"report → {out_dir / 'index.html'}")


@app.command()
@user_errors
def rerank(
    model_dir: ModelDir,
    data: RunData = None,
    epochs: Annotated[int | None, typer.Option(help="Override rerank.epochs.", min=1)] = None,
    candidates: Annotated[
        int | None, typer.Option(help="Bi-encoder results re-scored per query.", min=1)
    ] = None,
    json_path: JsonOut = None,
    force: Force = False,
    sets: Sets = None,
) -> None:
    """Train a cross-modal matcher that re-ranks the model's top results (MODEL_DIR/matcher).

    An existing matcher is replaced only with --force, atomically once the new one is trained.
    """
    from jointspace.atomic import write_text_atomic
    from jointspace.cli.tables import rerank_table
    from jointspace.matcher.model import MATCHER_DIR
    from jointspace.runs import Run, train_matcher

    run = Run.open(model_dir, sets or ())
    matcher = run.model_dir / MATCHER_DIR
    if matcher.exists() and not force:
        raise OutputExistsError(f"{matcher} already holds a matcher: pass --force to retrain it")
    if json_path:
        claim_file(json_path, force)
    cfg = run.config.rerank
    cfg.epochs = epochs if epochs is not None else cfg.epochs
    cfg.candidates = candidates if candidates is not None else cfg.candidates
    metrics = train_matcher(run, cfg, data=data)
    for split, stages in metrics.items():
        out.print(rerank_table(stages, f"{split} split, top {cfg.candidates} re-ranked"))
    if json_path:
        write_text_atomic(json_path, json.dumps(metrics, indent=2))


@app.command()
@user_errors
def embed(
    model_dir: ModelDir,
    data: RunStreamData = None,
    modality: Annotated[str, typer.Option(help="Which column to embed.")] = "image",
    out_path: Annotated[
        Path,
        typer.Option("--out", help="Output Parquet file (an existing one needs --force)."),
    ] = Path("embeddings.parquet"),
    split: Split = None,
    skip_bad: SkipBad = False,
    batch_size: Annotated[
        int, typer.Option(help="Items per batch; each finished batch survives a kill.", min=1)
    ] = 256,
    force: Force = False,
    sets: Sets = None,
) -> None:
    """Embed the unique values of one modality into a Parquet file.

    Finished batches are kept beside OUT (.OUT.parts) until OUT is written atomically, so a
    killed run, started again with the same arguments, embeds only what is left. The file's
    metadata records the model, its fingerprint, modality, split and data (docs/serving.md).
    """
    from jointspace.runs import Run, export_embeddings

    claim_file(out_path, force)
    run = Run.open(model_dir, sets or ())
    count = export_embeddings(
        run, out_path, modality, data=data, split=split, skip_bad=skip_bad, batch_size=batch_size
    )
    console.print(f"wrote {count} {modality} embeddings → {out_path}")


@app.command()
@user_errors
def search(
    model_dir: ModelDir,
    query: Query,
    data: RunData = None,
    k: TopK = 5,
    target: Annotated[str, typer.Option(help="Modality to search.")] = "image",
    split: Split = None,
    sets: Sets = None,
) -> None:
    """Brute-force search a manifest's items with a text query."""
    from jointspace.cli.tables import results_table
    from jointspace.runs import Run, search_manifest

    run = Run.open(model_dir, sets or ())
    manifest = run.manifest(data, modalities=["text", target], split=split, skip_bad=False)
    hits = search_manifest(run.model, manifest, [query], target, k)[0]
    out.print(results_table(query, hits))


@app.command()
@user_errors
def serve(
    model_dir: ModelDir,
    index: Annotated[str, typer.Option("--index", help="Index URI built by `index build`.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one).", min=0, max=65535)] = 8000,
    sets: Sets = None,
    classifier: Annotated[
        Path | None,
        typer.Option(help="A `jointspace classify` run to answer POST /classify with."),
    ] = None,
) -> None:
    """Serve the REST API (/search, /items, /media, /health, /docs) and the search page.

    Each request is logged to stderr as one JSON line (method, path, status, ms, client).
    """
    from jointspace.serve import create_app
    from jointspace.serve.listen import bind_port, run_on

    # Bind first: a busy port fails at once, before loading anything or announcing a URL.
    sock = bind_port(host, port)
    with sock:
        application = create_app(model_dir, index, overrides=sets or (), classifier=classifier)
        bound = sock.getsockname()[1]
        console.print(
            f"serving {index} with {model_dir} on http://{host}:{bound}",
            soft_wrap=True,
            highlight=False,
        )
        run_on(sock, application)


app.command()(demo)  # listed last in --help, as before the CLI became a package


def main() -> None:
    app()


if __name__ == "__main__":
    main()
