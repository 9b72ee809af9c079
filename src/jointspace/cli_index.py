"""``jointspace index``: embed a manifest into a vector index and query it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from jointspace.cli_errors import user_errors
from jointspace.cli_options import Data, ModelDir, Query, TopK
from jointspace.errors import NotFoundError

app = typer.Typer(help="Build and query vector indexes (FAISS, Milvus).", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
IndexUri = Annotated[
    str,
    typer.Option(
        "--index", help="faiss://DIR[?kind=hnsw|ivfpq], milvus://FILE.db or milvus://HOST:PORT"
    ),
]


@app.command()
@user_errors
def build(
    model_dir: ModelDir,
    data: Data,
    index: IndexUri,
    modality: Annotated[str, typer.Option(help="Which column to index.")] = "image",
    split: Annotated[str | None, typer.Option(help="Index only this split.")] = None,
    batch_size: Annotated[int, typer.Option(help="Items embedded per batch.")] = 256,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Discard what the index holds and build it afresh: for a damaged index, one "
            "built by another model, or a folder that holds other files.",
        ),
    ] = False,
) -> None:
    """Embed every distinct item of a modality into the index; a rerun resumes.

    Only one build may write an index at a time; searches and `serve` may run meanwhile.
    """
    from jointspace.index.build import build_index
    from jointspace.pipeline import load_manifest, load_trained

    model = load_trained(model_dir)
    manifest = load_manifest(data, [modality], split=split)
    built = build_index(
        model, model_dir, manifest, modality, index, batch_size=batch_size, force=force
    )
    try:
        err.print(f"{len(built)} {modality} items in {index}")
    finally:
        built.close()


@app.command()
@user_errors
def search(
    model_dir: ModelDir,
    index: IndexUri,
    query: Query,
    k: TopK = 5,
    filter: Annotated[
        str | None, typer.Option(help='e.g. label == "7" and split in ["test"]')
    ] = None,
    rerank: Annotated[
        int, typer.Option(help="Re-score the top N with the model's matcher (`jointspace rerank`).")
    ] = 0,
) -> None:
    """Search an index with a text query (the model must be the one that built it)."""
    from rich.table import Table

    from jointspace.index.build import open_for_model
    from jointspace.models import load
    from jointspace.models.io import model_fingerprint

    # Open the index first: a missing or damaged one is reported before a model loads.
    opened = open_for_model(index, model_fingerprint(model_dir))  # read-only: never writes
    try:
        model = load(model_dir)
        hits = opened.search(model.encode([query], "text"), k=max(k, rerank), filter=filter)[0]
        ranked = (
            _rerank(model, model_dir, opened, query, hits, rerank)
            if rerank
            else [(hit, None) for hit in hits]
        )
    finally:
        opened.close()
    table = Table(title=f"query: {query!r}")
    for name in ("rank", "score", "match", "id", "metadata"):
        table.add_column(name)
    for rank, (hit, matched) in enumerate(ranked[:k], start=1):
        meta = ", ".join(f"{key}={value}" for key, value in hit.metadata.items())
        shown = "" if matched is None else f"{matched:.2f}"
        table.add_row(str(rank), f"{hit.score:.3f}", shown, hit.id, meta)
    out.print(table)


def _rerank(model, model_dir, opened, query: str, hits: list, depth: int) -> list:
    from jointspace.index.build import indexed_media
    from jointspace.matcher.search import SearchMatcher

    target, root = indexed_media(opened)
    reranker = SearchMatcher.for_model(model, model_dir, target, root)
    if reranker is None or not reranker.supports("text"):
        raise NotFoundError(f"{model_dir} has no text–{target} re-ranker: run `jointspace rerank`")
    return reranker.rerank("text", query, hits, depth)
