"""``jointspace export RUN --to FORMAT DIR``: a trained model in a format other tools run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from jointspace.cli.options import Force, ModelDir, Sets
from jointspace.errors import InputError

err = Console(stderr=True)
FORMATS = ("onnx",)


def export(
    model_dir: ModelDir,
    out_dir: Annotated[
        Path,
        typer.Argument(help="Output directory: new or empty (--force replaces an earlier export)."),
    ],
    to: Annotated[str, typer.Option("--to", help="Format: onnx (each tower for onnxruntime).")],
    force: Force = False,
    sets: Sets = None,
) -> None:
    """Export each tower as an ONNX graph with its preprocessing (onnx.json) and parity check."""
    if to not in FORMATS:
        raise InputError(f"--to {to!r}: unknown format; choose one of {', '.join(FORMATS)}")
    from jointspace.runs import Run
    from jointspace.runs.onnx_export import SPEC_FILE, export_onnx

    spec = export_onnx(Run.open(model_dir, sets or ()), out_dir, force=force)
    for modality, tower in spec["towers"].items():
        cosine = tower["parity"]["min_cosine"]
        err.print(f"{modality}: {out_dir / tower['file']} (parity: cosine ≥ {cosine:.6f})")
    err.print(f"preprocessing and inputs → {out_dir / SPEC_FILE}")
