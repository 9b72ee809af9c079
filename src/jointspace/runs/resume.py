"""The config a run trains with: a new one as given, or on ``--resume`` the run's own."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jointspace.config import ConfigError, ExperimentConfig, apply_overrides
from jointspace.runs.run import RUN_CONFIG


def resume_config(
    config: Path | None,
    run_dir: Path,
    *,
    resume: bool,
    force: bool,
    overrides: dict[str, Any],
    data: str | None = None,
    sets: Sequence[str] = (),
) -> ExperimentConfig:
    """The config to train, with ``--set`` ``sets`` then CLI ``overrides`` ("train.epochs": 20,
    …) applied.

    On ``resume`` it is the run's recorded ``config.yaml``; a CONFIG given as well must match it
    (same overrides applied) unless ``force``, which trains CONFIG instead. ``data`` (--data)
    is passed to ``fit`` on its own, which records it; here it only keeps it out of the comparison.
    """
    given = None
    if config is not None:
        given = _with(apply_overrides(ExperimentConfig.from_yaml(config), sets), overrides)
    if not resume:
        if force:
            raise ConfigError("--force only applies with --resume (a new run never replaces one)")
        if given is None:
            raise ConfigError("give the experiment config (CONFIG) or continue a run (--resume)")
        return given
    recorded_path = run_dir / RUN_CONFIG
    if not recorded_path.is_file():
        raise ConfigError(f"nothing to resume: {run_dir} holds no run ({RUN_CONFIG} missing)")
    recorded = _with(apply_overrides(ExperimentConfig.from_yaml(recorded_path), sets), overrides)
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
