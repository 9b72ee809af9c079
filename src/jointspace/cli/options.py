"""Command-line options shared by several command groups (typer only: no heavy imports)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelDir = Annotated[Path, typer.Argument(help="Model or run directory.")]
Data = Annotated[str, typer.Option("--data", help="Manifest path or builtin:NAME.")]
RunData = Annotated[
    str | None,
    typer.Option(
        "--data", help="Manifest path or builtin:NAME (default: the one the run was trained on)."
    ),
]
ConfigData = Annotated[
    str | None,
    typer.Option(
        "--data", help="Manifest path or builtin:NAME (default: the config's data.manifest)."
    ),
]
# Commands that stream their data (embed, index build) also read WebDataset shards.
StreamData = Annotated[
    str, typer.Option("--data", help="Manifest path, builtin:NAME or shards (DIR, a pattern).")
]
RunStreamData = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="Manifest path, builtin:NAME or shards (DIR or DIR/shard-{000000..000009}.tar; "
        "default: the run's data).",
    ),
]
Query = Annotated[str, typer.Option(help="Query text.")]
TopK = Annotated[int, typer.Option(help="How many results.", min=1)]
Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace an existing output. A directory is replaced only if this command wrote it "
        "and holds nothing else; without --force an existing output is refused, unchanged.",
    ),
]
# Every command that reads a config (a YAML file or a run's own) takes --set (docs/training.md).
Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Override one config value (VALUE read as YAML), e.g. train.lr=3e-4 or "
        "objectives.0.name=siglip; repeatable.",
    ),
]
SkipBad = Annotated[bool, typer.Option("--skip-bad", help="Report and skip bad rows.")]
