"""``jointspace export RUN --to FORMAT DIR``: a trained model in a format other tools run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from jointspace.cli.options import Force, ModelDir, Sets
from jointspace.errors import InputError

if TYPE_CHECKING:
    from jointspace.runs import Run

err = Console(stderr=True)
FORMATS = ("onnx", "sentence-transformers", "hf")


def export(
    model_dir: ModelDir,
    out_dir: Annotated[
        Path,
        typer.Argument(help="Output directory: new or empty (--force replaces an earlier export)."),
    ],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Format: onnx (each tower for onnxruntime), sentence-transformers (the hf_text "
            "text tower), hf (Hugging Face towers as transformers models).",
        ),
    ],
    force: Force = False,
    sets: Sets = None,
) -> None:
    """Export the model's towers for other tools, each checked against jointspace's output."""
    if to not in FORMATS:
        raise InputError(f"--to {to!r}: unknown format; choose one of {', '.join(FORMATS)}")
    from jointspace.runs import Run

    run = Run.open(model_dir, sets or ())
    if to == "onnx":
        write_onnx(run, out_dir, force)
    elif to == "sentence-transformers":
        write_sentence_transformers(run, out_dir, force)
    else:
        from jointspace.runs.hf_export import export_hf  # written with the hf_clip towers

        err.print(f"Hugging Face model → {export_hf(run, out_dir, force=force)}")


def write_onnx(run: Run, out_dir: Path, force: bool) -> None:
    from jointspace.runs.onnx_export import SPEC_FILE, export_onnx

    spec = export_onnx(run, out_dir, force=force)
    for modality, tower in spec["towers"].items():
        cosine = tower["parity"]["min_cosine"]
        err.print(f"{modality}: {out_dir / tower['file']} (parity: cosine ≥ {cosine:.6f})")
    err.print(f"preprocessing and inputs → {out_dir / SPEC_FILE}")


def write_sentence_transformers(run: Run, out_dir: Path, force: bool) -> None:
    from jointspace.runs.st_export import RECORD_FILE, export_sentence_transformers

    directory = export_sentence_transformers(run, out_dir, force=force)
    record = json.loads((directory / RECORD_FILE).read_text())
    cosine = record["towers"]["text"]["parity"]["min_cosine"]
    err.print(
        f"text: {directory} → SentenceTransformer({str(directory)!r}) "
        f"(parity: cosine ≥ {cosine:.6f})"
    )
    for modality, why in record["skipped"].items():
        err.print(f"{modality}: skipped — {why}")
