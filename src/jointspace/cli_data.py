"""``jointspace data``: build, convert, inspect and validate datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from jointspace.cli_errors import user_errors

app = typer.Typer(
    help="Build, convert, inspect and validate paired datasets.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)
Manifest = Annotated[str, typer.Argument(help="Manifest path or builtin:NAME.")]


@app.command()
@user_errors
def build(
    name: Annotated[str, typer.Argument(help="Built-in dataset: digits, emoji.")],
    root: Annotated[Path | None, typer.Option(help="Cache directory (default: ~/.cache).")] = None,
    size: Annotated[int | None, typer.Option(help="Image size, for datasets that render.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Rebuild even if cached.")] = False,
) -> None:
    """Build a built-in dataset and print its manifest path."""
    from jointspace.data import build_dataset

    options = {"size": size} if size is not None else {}
    out.print(str(build_dataset(name, root, overwrite=overwrite, **options)))


@app.command()
@user_errors
def convert(
    src: Annotated[Path, typer.Argument(help="Source file or folder.")],
    fmt: Annotated[str, typer.Option("--format", help="coco, karpathy, hf, folder, clotho, …")],
    out_path: Annotated[
        Path, typer.Option("--out", help="Manifest to write (.csv/.jsonl/.parquet).")
    ],
) -> None:
    """Convert a dataset in a common layout into a standard manifest."""
    from jointspace.data.formats import convert as convert_dataset
    from jointspace.data.manifest import read_manifest

    written = convert_dataset(src, fmt, out_path)
    manifest = read_manifest(written, skip_bad=True)
    out.print(f"wrote {len(manifest)} rows → {written}")


@app.command()
@user_errors
def inspect(
    manifest: Manifest,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    plots: Annotated[Path | None, typer.Option(help="Write PNG charts into this folder.")] = None,
) -> None:
    """Rows, modalities, caption and image statistics, duplicates and rows that fail to load."""
    from jointspace.atomic import write_text_atomic
    from jointspace.data import resolve_manifest
    from jointspace.data.inspect import inspect_manifest, save_plots
    from jointspace.data.manifest import open_manifest

    report = inspect_manifest(open_manifest(resolve_manifest(manifest)))
    out.print(report_table(report))
    if json_path:
        write_text_atomic(json_path, json.dumps(report, indent=2, ensure_ascii=False))
    if plots:
        for path in save_plots(report, plots):
            err.print(f"plot → {path}")


@app.command()
@user_errors
def validate(manifest: Manifest) -> None:
    """Check every row; exit 0 when the manifest is clean, 1 with the problems listed otherwise."""
    from jointspace.data import resolve_manifest
    from jointspace.data.manifest import read_manifest

    rows = read_manifest(resolve_manifest(manifest))
    out.print(f"{rows.path}: {len(rows)} rows, no problems")


def report_table(report: dict) -> Table:
    table = Table(title=report["manifest"], show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("rows", str(report["rows"]))
    table.add_row("splits", _counts(report["splits"]))
    for modality, c in report["modalities"].items():
        table.add_row(modality, f"{c['present']} present, {c['missing']} missing")
    if "captions" in report:
        words = report["captions"]["words"]
        table.add_row(
            "caption words", f"min {words['min']}, mean {words['mean']:.1f}, max {words['max']}"
        )
        table.add_row("distinct captions", str(report["captions"]["distinct"]))
        table.add_row("near-duplicate captions", str(len(report["captions"]["near_duplicates"])))
    if "images" in report:
        images = report["images"]
        table.add_row("distinct images", str(images["distinct"]))
        table.add_row("image sizes", _counts(dict(list(images["sizes"].items())[:5])))
        table.add_row("duplicate images (same bytes)", str(len(images["duplicates"])))
    if "labels" in report:
        table.add_row(
            "labels",
            f"{report['labels']['distinct']} distinct; top: "
            + _counts(dict(list(report["labels"]["top"].items())[:5])),
        )
    table.add_row("rows that fail to load", str(len(report["problems"])))
    for problem in report["problems"][:10]:
        table.add_row("", problem)
    return table


def _counts(counts: dict) -> str:
    return ", ".join(f"{k or '(none)'}: {v}" for k, v in counts.items())
