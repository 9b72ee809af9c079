"""``jointspace train`` and ``compare``; on --resume a run trains with its own recorded config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from jointspace.cli_options import Force
from jointspace.cli_outputs import mark_dir, prepare_dir
from jointspace.config import ConfigError, ExperimentConfig

out = Console()
err = Console(stderr=True)
SkipBad = Annotated[bool, typer.Option("--skip-bad", help="Report and skip bad rows.")]

RUN_CONFIG = "config.yaml"  # the same name pipeline.RUN_CONFIG (not imported: it pulls torch)


def train(
    config: Annotated[
        Path | None,
        typer.Argument(help="Experiment YAML, e.g. configs/digits.yaml (optional with --resume)."),
    ] = None,
    data: Annotated[str | None, typer.Option(help="Override the config's manifest.")] = None,
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
) -> None:
    """Train a joint embedding model from a YAML config.

    A new run refuses an --out that already holds run files (nothing is written). --resume reads
    the run's config.yaml, which is updated (atomically) only once training continues.
    """
    from jointspace.pipeline import fit

    overrides = {"train.epochs": epochs, "train.max_steps": max_steps}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if skip_bad:
        overrides["data.skip_bad"] = True
    cfg = train_config(config, out_dir, resume=resume, force=force, overrides=overrides, data=data)
    result = fit(cfg, out_dir, manifest=data, resume=resume)
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
) -> None:
    """Train one config with each objective (same towers, data, seed, budget); tabulate."""
    from jointspace.compare import CLOSED_FORM, markdown_table, objectives_for
    from jointspace.compare import compare as run_compare

    cfg = ExperimentConfig.from_yaml(config)
    cfg.train.epochs = epochs if epochs is not None else cfg.train.epochs
    names = [n.strip() for n in objectives.split(",") if n.strip()]
    for name in names:  # a typo is refused before the output directory is touched
        if name not in CLOSED_FORM:
            objectives_for(name)
    prepare_dir(out_dir, "compare", force)
    rows = run_compare(cfg, names, out_dir, manifest=data, log=err.print)
    mark_dir(out_dir, "compare")
    out.print(markdown_table(rows, cfg.data.modalities))
    err.print(f"table → {out_dir / 'compare.md'}, {out_dir / 'compare.json'}")


def train_config(
    config: Path | None,
    run_dir: Path,
    *,
    resume: bool,
    force: bool,
    overrides: dict[str, Any],
    data: str | None = None,
) -> ExperimentConfig:
    """The config to train, with CLI ``overrides`` ("train.epochs": 20, …) applied.

    On ``resume`` it is the run's recorded ``config.yaml``; a CONFIG given as well must match it
    (same overrides applied) unless ``force``, which trains CONFIG instead. ``data`` (--data)
    is passed to ``fit`` on its own, which records it; here it only keeps it out of the comparison.
    """
    given = _with(ExperimentConfig.from_yaml(config), overrides) if config is not None else None
    if not resume:
        if force:
            raise ConfigError("--force only applies with --resume (a new run never replaces one)")
        if given is None:
            raise ConfigError("give the experiment config (CONFIG) or continue a run (--resume)")
        return given
    recorded_path = run_dir / RUN_CONFIG
    if not recorded_path.is_file():
        raise ConfigError(f"nothing to resume: {run_dir} holds no run ({RUN_CONFIG} missing)")
    recorded = _with(ExperimentConfig.from_yaml(recorded_path), overrides)
    if given is None:
        return recorded
    if data is not None:
        given.data.manifest = recorded.data.manifest
    elif Path(given.data.manifest).exists():  # a run records a file as its absolute path
        given.data.manifest = str(Path(given.data.manifest).resolve())
    changed = config_diff(recorded, given)
    if changed and not force:
        shown = "; ".join(
            f"{key}: {old!r} recorded, {new!r} in {config}" for key, old, new in changed
        )
        raise ConfigError(
            f"{config} differs from the config {run_dir} was trained with ({shown}); "
            "drop CONFIG to continue as recorded, or pass --force to continue with CONFIG"
        )
    return given


def config_diff(a: ExperimentConfig, b: ExperimentConfig) -> list[tuple[str, Any, Any]]:
    """(dotted key, value in ``a``, value in ``b``) for every field where they differ."""
    flat_a, flat_b = _flatten(a.to_dict()), _flatten(b.to_dict())
    keys = sorted(set(flat_a) | set(flat_b))
    return [(k, flat_a.get(k), flat_b.get(k)) for k in keys if flat_a.get(k) != flat_b.get(k)]


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _with(config: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    for dotted, value in overrides.items():
        section, name = dotted.split(".")
        setattr(getattr(config, section), name, value)
    return config
