"""How a label becomes a class name in zero-shot prompts: leaf (default), path or a mapping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from jointspace.evaluate.errors import EvaluationError

NAMINGS = ("leaf", "path")


def class_name(label: str, naming: str = "leaf") -> str:
    """``shapes/star_icons`` → "star icons" (``leaf``) or "shapes/star icons" (``path``)."""
    if naming not in NAMINGS:
        raise EvaluationError(f"class naming must be one of {', '.join(NAMINGS)}, got {naming!r}")
    text = label.rstrip("/").rsplit("/", 1)[-1] if naming == "leaf" else label
    return " ".join(text.replace("-", " ").replace("_", " ").split())


def class_names(
    labels: Sequence[str], names: str | Path | Mapping[str, str] | None = "leaf"
) -> tuple[dict[str, str], str]:
    """Each label's class name, and how they were chosen (``leaf``, ``path``, ``mapping`` or
    ``file:PATH``) for the result to record. A mapping must name every label."""
    names = "leaf" if names is None else names
    if isinstance(names, str) and names in NAMINGS:
        return {label: class_name(label, names) for label in labels}, names
    if isinstance(names, Mapping):
        mapping, source = dict(names), "mapping"
    else:
        mapping, source = read_names(Path(names)), f"file:{names}"
    missing = [label for label in labels if label not in mapping]
    if missing:
        shown = ", ".join(map(repr, missing[:5])) + (" …" if len(missing) > 5 else "")
        raise EvaluationError(
            f"class names ({source}): no name for {len(missing)} of {len(labels)} labels: {shown}"
        )
    chosen = {label: str(mapping[label]).strip() for label in labels}
    empty = [label for label, name in chosen.items() if not name]
    if empty:
        raise EvaluationError(f"class names ({source}): empty name for label {empty[0]!r}")
    return chosen, source


def read_names(path: Path) -> dict[str, str]:
    """A ``{label: class name}`` mapping from a JSON or YAML file."""
    if not path.is_file():
        raise EvaluationError(f"class names: {path} is not a file, nor one of {', '.join(NAMINGS)}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise EvaluationError(f"{path}: not a JSON/YAML mapping of label to class name") from error
    if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
        raise EvaluationError(f"{path}: must map each label to a class name (text)")
    return {str(k): v for k, v in loaded.items()}
