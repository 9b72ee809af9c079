"""``jointspace train`` and ``compare``; on --resume a run trains with its own recorded config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from jointspace.cli.options import Force, Sets, SkipBad

out = Console()
LogTo = Annotated[
    str | None,
    typer.Option(
        help="Also log every metric to these trackers (train.log_to): tensorboard,mlflow "
        "(into RUN/tensorboard, RUN/mlflow.db; see docs/training.md)."
    ),
]
err = Console(stderr=True)


def train(
    config: Annotated[
        Path | None,
        typer.Argument(help="Experiment YAML, e.g. configs/digits.yaml (optional with --resume)."),
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="Override the config's manifest (or shard pattern).")
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Run directory: new, or without run files in it.")
    ] = Path("runs/latest"),
    epochs: Annotated[int | None, typer.Option(help="Override train.epochs.", min=1)] = None,
    max_steps: Annotated[int | None, typer.Option(help="Override train.max_steps.", min=1)] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue the run in --out from its latest checkpoint with its own config.yaml "
            "(--epochs/--max-steps extend it)."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="With --resume: continue with CONFIG though it differs from the run's."
        ),
    ] = False,
    skip_bad: SkipBad = False,
    log_to: LogTo = None,
    sets: Sets = None,
) -> None:
    """Train a joint embedding model from a YAML config.

    A new run refuses an --out that already holds run files (nothing is written). --resume reads
    the run's config.yaml, which is updated (atomically) only once training continues.
    Under torchrun (docs/distributed.md) each process trains a rank; rank 0 writes --out.
    """
    from jointspace.runs.fit import fit
    from jointspace.runs.resume import resume_config
    from jointspace.train.distributed import launched
    from jointspace.train.trackers import parse_log_to

    overrides = {"train.epochs": epochs, "train.max_steps": max_steps}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if skip_bad:
        overrides["data.skip_bad"] = True
    if log_to is not None:
        overrides["train.log_to"] = parse_log_to(log_to)
    cfg = resume_config(
        config, out_dir, resume=resume, force=force, overrides=overrides, data=data, sets=sets or ()
    )
    with launched(cfg.train.device) as world:
        result = fit(cfg, out_dir, manifest=data, resume=resume, world=world)
    if not world.is_main:
        return
    best = (
        f" (best {result.best['primary']:.3f} at step {result.best['step']})" if result.best else ""
    )
    err.print(f"trained {result.steps} steps → {result.model_dir}{best}")


def compare(
    config: Annotated[Path, typer.Argument(help="Experiment YAML shared by every run.")],
    objectives: Annotated[
        str, typer.Option(help="Comma-separated: clip,siglip,triplet-sum,triplet-max,cca,dcca")
    ] = "clip,siglip,triplet-sum,triplet-max,cca,dcca",
    data: Annotated[str | None, typer.Option(help="Override the config's manifest.")] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory of runs (new or empty; --force replaces one).")
    ] = Path("runs/compare"),
    epochs: Annotated[int | None, typer.Option(help="Override train.epochs.", min=1)] = None,
    force: Force = False,
    log_to: LogTo = None,
    sets: Sets = None,
) -> None:
    """Train one config with each objective (same towers, data, seed, budget); tabulate."""
    from jointspace.config import ExperimentConfig, apply_overrides
    from jointspace.runs.compare import CLOSED_FORM, markdown_table, objectives_for
    from jointspace.runs.compare import compare as run_compare
    from jointspace.runs.outputs import mark_dir, prepare_dir
    from jointspace.train.trackers import parse_log_to

    cfg = apply_overrides(ExperimentConfig.from_yaml(config), sets or ())
    cfg.train.epochs = epochs if epochs is not None else cfg.train.epochs
    if log_to is not None:  # each objective's run logs into its own directory
        cfg.train.log_to = parse_log_to(log_to)
    names = [n.strip() for n in objectives.split(",") if n.strip()]
    for name in names:  # a typo is refused before the output directory is touched
        if name not in CLOSED_FORM:
            objectives_for(name)
    prepare_dir(out_dir, "compare", force)
    rows = run_compare(cfg, names, out_dir, manifest=data, log=err.print)
    mark_dir(out_dir, "compare")
    out.print(markdown_table(rows, cfg.data.modalities))
    err.print(f"table → {out_dir / 'compare.md'}, {out_dir / 'compare.json'}")
