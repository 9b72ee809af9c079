"""``jointspace index``: embed a manifest into a vector index and query it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from jointspace.cli.errors import user_errors
from jointspace.cli.options import ModelDir, Query, Sets, StreamData, TopK
from jointspace.errors import NotFoundError

app = typer.Typer(help="Build and query vector indexes (FAISS, Milvus).", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
IndexUri = Annotated[
    str,
    typer.Option(
        "--index",
        help="faiss://DIR[?kind=hnsw|ivfpq|auto&memory=4GB&storage=fp16], milvus://FILE.db or "
        "milvus://HOST:PORT",
    ),
]


@app.command()
@user_errors
def build(
    model_dir: ModelDir,
    data: StreamData,
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
    sets: Sets = None,
) -> None:
    """Embed every distinct item of a modality into the index; a rerun resumes.

    Only one build may write an index at a time; searches and `serve` may run meanwhile.
    """
    from jointspace.runs import Run

    run = Run.open(model_dir, sets or ())
    source = run.source(data, modality, split=split, skip_bad=False)  # a manifest or shards
    built = run.build_index(source, modality, index, batch_size=batch_size, force=force)
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
    ef_search: Annotated[
        int | None,
        typer.Option(min=1, help="HNSW: candidates explored per query (default: tuned at build)."),
    ] = None,
    nprobe: Annotated[
        int | None,
        typer.Option(min=1, help="IVF-PQ: inverted lists probed per query (default: tuned)."),
    ] = None,
    sets: Sets = None,
) -> None:
    """Search an index with a text query (the model must be the one that built it)."""
    from jointspace.cli.tables import hits_table
    from jointspace.index.build import indexed_media
    from jointspace.runs import Run

    run = Run.open(model_dir, sets or ())
    # Open the index first: a missing or damaged one is reported before a model loads.
    opened = run.open_index(index)  # read-only: never writes
    try:
        # Only the settings given: the index's own tuned values stand for the others.
        knobs = {"ef_search": ef_search, "nprobe": nprobe}
        given = {name: value for name, value in knobs.items() if value is not None}
        vector = run.model.encode([query], "text")
        hits = opened.search(vector, k=max(k, rerank), filter=filter, **given)
        ranked = [(hit, None) for hit in hits[0]]
        if rerank:
            reranker = run.search_matcher(opened)
            if reranker is None or not reranker.supports("text"):
                target = indexed_media(opened)[0]
                raise NotFoundError(
                    f"{model_dir} has no text–{target} re-ranker: run `jointspace rerank`"
                )
            ranked = reranker.rerank("text", query, hits[0], rerank)
    finally:
        opened.close()
    out.print(hits_table(query, ranked[:k]))


@app.command()
@user_errors
def compact(
    uri: Annotated[
        str, typer.Argument(help="The index, e.g. faiss://runs/idx", show_default=False)
    ],
) -> None:
    """Reclaim the space of deleted items (FAISS: rewrite the vectors without them; Milvus
    compacts on its own). A writer's close does it too once deletes pass a third of the rows."""
    from jointspace.index import open_index

    index = open_index(uri, mode="w")
    try:
        removed = index.compact()
        err.print(f"{removed} deleted rows removed from {uri}; it holds {len(index)} items")
    finally:
        index.close()
