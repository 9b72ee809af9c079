"""Command-line options shared by several command groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelDir = Annotated[Path, typer.Argument(help="Model or run directory.")]
Data = Annotated[str, typer.Option("--data", help="Manifest path or builtin:NAME.")]
Query = Annotated[str, typer.Option(help="Query text.")]
TopK = Annotated[int, typer.Option(help="How many results.")]
