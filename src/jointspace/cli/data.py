"""``jointspace data``: build, convert, inspect and validate datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand

from jointspace.cli.errors import user_errors

app = typer.Typer(
    help="Build, convert, inspect and validate paired datasets.", no_args_is_help=True
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
Manifest = Annotated[str, typer.Argument(help="Manifest path or builtin:NAME.")]


class _BuildCommand(TyperCommand):
    """``data build``'s help lists the registered built-ins, looked up only when help is shown."""

    def format_help(self, ctx, formatter):
        from jointspace.registry import available

        self.help = (self.help or "").replace("{builtins}", ", ".join(available("dataset")))
        return super().format_help(ctx, formatter)


@app.command(cls=_BuildCommand)
@user_errors
def build(
    name: Annotated[str, typer.Argument(help="A built-in dataset (listed above).")],
    root: Annotated[Path | None, typer.Option(help="Cache directory (default: ~/.cache).")] = None,
    size: Annotated[int | None, typer.Option(help="Image size, for datasets that render.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Rebuild even if cached.")] = False,
    force: Annotated[
        bool, typer.Option(help="Replace a target folder that holds files a build did not write.")
    ] = False,
) -> None:
    """Build a built-in dataset ({builtins}) and print its manifest path."""
    from jointspace.data import build_dataset

    options = {"size": size} if size is not None else {}
    path = build_dataset(name, root, overwrite=overwrite, force=force, **options)
    out.print(str(path), markup=False, highlight=False)


@app.command()
@user_errors
def convert(
    src: Annotated[Path, typer.Argument(help="Source file or folder.")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="coco, karpathy, hf, folder, clotho or audiocaps (see docs/data.md)."
        ),
    ],
    out_path: Annotated[
        Path, typer.Option("--out", help="Manifest to write (.csv/.jsonl/.parquet).")
    ],
    images_dir: Annotated[
        Path | None, typer.Option(help="coco, karpathy: folder the image file names are under.")
    ] = None,
    audio_dir: Annotated[
        Path | None, typer.Option(help="clotho, audiocaps: folder of the audio files.")
    ] = None,
    text_column: Annotated[
        str | None, typer.Option(help="hf: caption column (default: text, caption, …).")
    ] = None,
    image_column: Annotated[
        str | None, typer.Option(help="hf: image column (default: image, img, image_path).")
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(help="folder: caption made from the class name, e.g. 'a photo of a {label}'."),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Overwrite --out and extracted files if they exist.")
    ] = False,
) -> None:
    """Convert a dataset in a common layout into a standard manifest."""
    from jointspace.data.formats import convert as convert_dataset
    from jointspace.data.manifest import read_manifest

    given = dict(
        images_dir=images_dir,
        audio_dir=audio_dir,
        text_column=text_column,
        image_column=image_column,
        template=template,
    )
    options = {k: v for k, v in given.items() if v is not None}
    written = convert_dataset(src, fmt, out_path, force=force, **options)
    manifest = read_manifest(written, skip_bad=True)
    skipped = f" ({len(manifest.skipped)} bad rows: see data validate)" if manifest.skipped else ""
    out.print(f"wrote {len(manifest)} rows → {written}{skipped}", markup=False, highlight=False)


@app.command()
@user_errors
def inspect(
    manifest: Manifest,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    plots: Annotated[Path | None, typer.Option(help="Write PNG charts into this folder.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing report or charts.")] = False,
) -> None:
    """Rows, modalities, caption and image statistics, duplicates and rows that fail to load."""
    from jointspace.atomic import write_text_atomic
    from jointspace.data import resolve_manifest
    from jointspace.data.inspect import inspect_manifest
    from jointspace.data.manifest import open_manifest
    from jointspace.errors import JointspaceError
    from jointspace.report.inspect_plots import PLOT_NAMES, save_plots

    targets = ([json_path] if json_path else []) + [plots / n for n in PLOT_NAMES if plots]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise JointspaceError(f"{existing[0]} already exists; pass --force to overwrite it")
    report = inspect_manifest(open_manifest(resolve_manifest(manifest)))
    out.print(report_table(report))
    if json_path:
        write_text_atomic(json_path, json.dumps(report, indent=2, ensure_ascii=False))
    if plots:
        for path in save_plots(report, plots):
            err.print(f"plot → {path}")


@app.command()
@user_errors
def validate(
    manifest: Manifest,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad", help="List bad rows as warnings and exit 0 if any rows are usable."
        ),
    ] = False,
) -> None:
    """Check every row; exit 0 when the manifest is clean, 1 with the problems listed otherwise.

    Also warns when byte-identical media files sit in more than one split.
    """
    from jointspace.data import resolve_manifest
    from jointspace.data.manifest import read_manifest
    from jointspace.data.overlap import split_overlaps

    rows = read_manifest(resolve_manifest(manifest), skip_bad=skip_bad)
    for problem in rows.skipped:
        err.print(f"warning: skipping {problem.describe(rows.path)}", markup=False)
    for overlap in split_overlaps(rows):
        err.print(f"warning: {overlap.describe()}", markup=False, highlight=False)
    if rows.skipped:
        total = len(rows) + len({p.row for p in rows.skipped})
        summary = f"{len(rows)} of {total} rows usable, {total - len(rows)} skipped"
    else:
        summary = f"{len(rows)} rows, no problems"
    out.print(f"{rows.path}: {summary}", markup=False, highlight=False)


@app.command()
@user_errors
def shards(
    manifest: Manifest,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for shard-NNNNNN.tar files and index.json.")
    ],
    maxcount: Annotated[int, typer.Option(help="Samples per shard, at most.", min=1)] = 10_000,
    maxsize: Annotated[
        int, typer.Option(help="Bytes per shard: a shard closes once it reaches this.", min=1)
    ] = 1 << 30,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Report and skip bad rows.")] = False,
    force: Annotated[
        bool, typer.Option(help="Replace an earlier `data shards` output in --out.")
    ] = False,
) -> None:
    """Write a manifest as WebDataset tar shards ({key}.txt|json|jpg|png|wav|flac) + index.json.

    Every row is validated first; train, embed and index build read the shards with --data.
    """
    from jointspace.data import resolve_manifest
    from jointspace.data.manifest import read_manifest
    from jointspace.data.shards import write_shards
    from jointspace.progress import Progress
    from jointspace.runs.outputs import claim_dir, mark_dir, prepare_dir

    claim_dir(out_dir, "data shards", force)  # refused before any work, nothing touched
    rows = read_manifest(resolve_manifest(manifest), skip_bad=skip_bad)
    for problem in rows.skipped:
        err.print(f"warning: skipping {problem.describe(rows.path)}", markup=False)
    prepare_dir(out_dir, "data shards", force)
    progress = Progress(len(rows), 0, "shards", enabled=True, every=max(1, len(rows) // 10))
    with progress.active():
        index = write_shards(
            rows,
            out_dir,
            maxcount=maxcount,
            maxsize=maxsize,
            on_sample=lambda n: progress.update(n, {}),
        )
    mark_dir(out_dir, "data shards")
    count = len(index["shards"])
    summary = f"wrote {index['samples']} samples in {count} shard{'s' * (count != 1)} → {out_dir}"
    out.print(summary, markup=False, highlight=False)


def report_table(report: dict) -> Table:
    table = Table(title=escape(report["manifest"]), show_header=False)
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
    for overlap in report.get("split_overlap", []):
        a, b = overlap["splits"]
        examples = "; ".join(" = ".join(pair) for pair in overlap["examples"])
        table.add_row(
            escape(f"{overlap['column']}s in {b} and {a} (same bytes)"),
            escape(f"{overlap['count']}, e.g. {examples}"),
        )
    if "labels" in report:
        table.add_row(
            "labels",
            f"{report['labels']['distinct']} distinct; top: "
            + _counts(dict(list(report["labels"]["top"].items())[:5])),
        )
    table.add_row("rows that fail to load", str(len(report["problems"])))
    for problem in report["problems"][:10]:
        table.add_row("", escape(problem))
    return table


def _counts(counts: dict) -> str:
    return ", ".join(f"{k or '(none)'}: {v}" for k, v in counts.items())
