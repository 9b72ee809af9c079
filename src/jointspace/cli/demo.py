"""``jointspace demo``: train on a built-in dataset, then print what the model learned."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from jointspace.cli.errors import user_errors
from jointspace.cli.options import Sets
from jointspace.runs.outputs import claim_dir, claim_file

if TYPE_CHECKING:
    from jointspace.runs.demo import DemoResult

out = Console()


@user_errors
def demo(
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Run directory: new or empty. An earlier demo run there is replaced only with "
            "--force, and only if it holds nothing the demo did not write.",
        ),
    ] = Path("runs/demo"),
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
    epochs: Annotated[int | None, typer.Option(help="Override the demo's epochs.", min=1)] = None,
    grid: Annotated[Path | None, typer.Option(help="Save the query results as a PNG grid.")] = None,
    serve: Annotated[
        bool, typer.Option(help="End by serving a search page over the data.")
    ] = False,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 8000,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace an earlier demo run in --out (and an existing --grid file)."
        ),
    ] = False,
    sets: Sets = None,
) -> None:
    """Build a built-in dataset, train on CPU, evaluate the test split, show a few searches.

    Never deletes a directory it did not create: a non-empty --out is refused unless it is an
    earlier demo run (it holds a .jointspace-output marker) and --force is given.
    """
    from jointspace.runs.demo import DEMO_EXTRAS, plan_demo, run_demo

    started = time.perf_counter()
    if grid is not None:
        claim_file(grid, force)
    plan = plan_demo(dataset, pretrained, epochs, sets or ())
    claim_dir(out_dir, "demo", force, allowed=DEMO_EXTRAS)  # refused before anything is said
    out.print(
        f"[bold]jointspace demo[/]: {plan.config_name} on {plan.manifest_path}\n"
        f"training into {out_dir}"
    )
    result = run_demo(plan, out_dir, force=force)
    show(result)
    if grid is not None and plan.target == "image":
        from jointspace.report.grid import save_grid

        save_grid(grid, result.queries, result.hits, result.searched)
        out.print(f"query grid → {grid}")
    out.print(f"done in {time.perf_counter() - started:.0f} s; model in {out_dir / 'model'}")
    if serve:
        serve_demo(out_dir, port)


def show(result: DemoResult) -> None:
    """Each split's metrics beside exact chance, then each query's top hits."""
    from jointspace.cli.tables import metrics_table

    relevance = result.plan.config.eval.relevance
    for split, metrics in result.metrics.items():
        title = f"{split} split ({result.rows[split]} rows, relevance={relevance}), in %"
        out.print(metrics_table(metrics, title))
    if result.held_out_only:
        out.print("[bold]text → image over the held-out split only[/] (never trained on):")
    for query, hits in zip(result.queries, result.hits, strict=True):
        table = Table.grid(padding=(0, 2))
        labels = "  ".join(
            f"{result.icons.get(h.id, '')}{h.label} ({h.score:.2f}, {h.split})" for h in hits
        )
        table.add_row(f"[bold]{query!r}[/] → top-5 labels:", labels)
        out.print(table)


def serve_demo(out_dir: Path, port: int = 8000) -> None:
    """Index the demo run's dataset with its model and serve the search page."""
    from jointspace.runs.demo import index_demo
    from jointspace.serve import create_app
    from jointspace.serve.listen import bind_port, run_on

    sock = bind_port("127.0.0.1", port)  # a busy port fails before minutes of indexing
    uri = index_demo(out_dir)
    print(f"search page: http://127.0.0.1:{port}  (Ctrl-C stops it)")
    run_on(sock, create_app(out_dir, uri))
