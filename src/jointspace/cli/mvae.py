"""``jointspace mvae`` (train a multimodal VAE into a run) and ``generate`` (one modality from
another with a trained MVAE)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from jointspace.cli.errors import user_errors
from jointspace.cli.options import ConfigData, Force, Sets

out = Console()
err = Console(stderr=True)


@user_errors
def mvae(
    config: Annotated[
        Path,
        typer.Argument(help="MVAE YAML (see docs/modalities.md), e.g. configs/mvae-digits.yaml."),
    ],
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Run directory: new or empty; an earlier `jointspace mvae` output there is "
            "replaced only with --force.",
        ),
    ],
    data: ConfigData = None,
    force: Force = False,
    sets: Sets = None,
) -> None:
    """Train a multimodal VAE (product of experts, sub-sampled ELBO) and report its losses.

    Writes OUT: config.yaml, mvae.safetensors + mvae.json, vocab.json (text), metrics.json.
    """
    from jointspace.config import apply_overrides
    from jointspace.generative.config import MvaeConfig
    from jointspace.runs.mvae import train_mvae

    cfg = apply_overrides(MvaeConfig.from_yaml(config), sets or [])
    metrics = train_mvae(cfg, out_dir, data=data, force=force).metrics
    table = Table(title="mvae: negative ELBO per row (lower is better)")
    table.add_column("term")
    splits = [s for s in ("val", "test") if s in metrics]
    for split in splits:
        table.add_column(split, justify="right")
    for term in metrics[splits[0]] if splits else []:
        table.add_row(term, *(f"{metrics[s][term]:.2f}" for s in splits))
    out.print(table)
    err.print(f"mvae → {out_dir}", highlight=False, soft_wrap=True)


@user_errors
def generate(
    run: Annotated[Path, typer.Argument(help="An MVAE run directory (`jointspace mvae`).")],
    source: Annotated[
        str, typer.Option("--from", help="The modality given: text, image or audio.")
    ],
    to: Annotated[str, typer.Option("--to", help="The modality to generate.")],
    text: Annotated[str | None, typer.Option(help="The text input (--from text).")] = None,
    image: Annotated[Path | None, typer.Option(help="An image file (--from image).")] = None,
    audio: Annotated[Path | None, typer.Option(help="An audio file (--from audio).")] = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="PNG to write (--to image; --to audio draws its log-mel)."),
    ] = None,
    samples: Annotated[
        int | None,
        typer.Option(
            help="Draw N latents from the posterior and write them as a grid (default: one "
            "output from the posterior mean).",
            min=1,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the posterior draws.")] = 0,
    top_k: Annotated[int, typer.Option("--top-k", help="Words to list (--to text).", min=1)] = 10,
    force: Force = False,
) -> None:
    """Generate one modality from another: an image from text, words from an image, …"""
    from jointspace.atomic import write_bytes_atomic
    from jointspace.errors import InputError
    from jointspace.generative.pictures import grid_png
    from jointspace.runs.mvae import MvaeRun
    from jointspace.runs.outputs import claim_file

    given = {"text": text, "image": image, "audio": audio}
    if source not in given:
        raise InputError(f"--from {source!r}: unknown modality; use text, image or audio")
    if extra := [m for m, v in given.items() if v is not None and m != source]:
        raise InputError(f"--{extra[0]} given, but --from is {source}: give --{source} only")
    if given[source] is None:
        raise InputError(f"--from {source} needs its input: give --{source}")
    if to not in given:
        raise InputError(f"--to {to!r}: unknown modality; use text, image or audio")
    if to == "text" and out_file is not None:
        raise InputError("--to text prints words: leave out --out")
    if to != "text" and out_file is None:
        raise InputError(f"--to {to} writes a PNG: give --out FILE.png")
    if out_file is not None:
        claim_file(out_file, force)
    model = MvaeRun.open(run)
    generated = model.generate({source: given[source]}, to, samples=samples, seed=seed)
    if to == "text":
        for n, row in enumerate(generated):
            table = Table(title="generated words" + (f" (sample {n + 1})" if samples else ""))
            table.add_column("word")
            table.add_column("probability", justify="right")
            for word, p in model.top_words(row, top_k):
                table.add_row(word, f"{p:.3f}")
            out.print(table)
        return
    assert out_file is not None
    columns = 10 if len(generated) > 10 else len(generated)
    rows = [generated[i : i + columns] for i in range(0, len(generated), columns)]
    write_bytes_atomic(out_file, grid_png(rows, cell=96 if len(generated) == 1 else 48))
    err.print(f"{to} → {out_file}", highlight=False, soft_wrap=True)
