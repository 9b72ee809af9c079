"""``--set KEY.PATH=VALUE``: dotted overrides of a config, re-checked like a YAML file.

A path walks mappings by key and lists by index (``objectives.0.name`` or ``objectives[0].name``;
the index one past the end appends). VALUE is read as YAML: ``3e-4``, ``true``, ``null``,
``[text, image]``, ``{width: 32}``; an empty VALUE is null.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from jointspace.config import C, ConfigError
from jointspace.yaml_loader import load_yaml


def apply_overrides(config: C, overrides: Sequence[str]) -> C:
    """A new config: ``config`` with each override set in turn, then checked as a whole.

    An unknown key, a wrong type or a value out of range is a ``ConfigError`` naming the
    override (``--set train.lr=fast: train.lr: expected float, got 'fast'``).
    """
    if not overrides:
        return config
    tree = config.to_dict()
    parsed = [parse_override(text) for text in overrides]
    for keys, value, text in parsed:
        set_path(tree, keys, value, text)
    try:
        return type(config).from_dict(tree)
    except ConfigError as err:
        raise ConfigError(f"{_culprit(str(err), parsed)}: {err}") from None


def parse_override(text: str) -> tuple[list[str | int], Any, str]:
    """``"objectives[0].weight=2e-1"`` → (["objectives", 0, "weight"], 0.2, the text)."""
    key, equals, raw = text.partition("=")
    key = key.strip()
    if not equals or not key:
        raise ConfigError(f"--set {text}: expected KEY.PATH=VALUE, e.g. train.lr=3e-4")
    dotted = re.sub(r"\[(-?\d+)\]", r".\1", key)
    parts = dotted.split(".")
    if any(not part for part in parts):
        raise ConfigError(f"--set {text}: {key!r} has an empty key; write e.g. train.lr")
    keys: list[str | int] = [int(p) if re.fullmatch(r"-?\d+", p) else p for p in parts]
    try:
        value = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(
            f"--set {text}: the value is not valid YAML ({problem}); quote it, e.g. {key}='...'"
        ) from None
    return keys, value, text


def set_path(tree: dict[str, Any], keys: list[str | int], value: Any, text: str) -> None:
    """Set ``value`` at ``keys`` in plain config data, creating missing mappings on the way."""
    node: Any = tree
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = _dotted(keys[: depth + 1])
        if isinstance(node, list):
            if not isinstance(key, int) or not 0 <= key <= len(node):
                raise ConfigError(
                    f"--set {text}: {where}: a list of {len(node)} items takes an index "
                    f"0..{len(node) - 1} (or {len(node)} to append)"
                )
            if key == len(node):
                node.append(None if last else {})
        elif isinstance(node, dict):
            key = str(key)
            if not last and not isinstance(node.get(key), dict | list):
                if node.get(key) is not None:  # a value, not a section: nothing below it
                    raise ConfigError(
                        f"--set {text}: {where} is a value ({node[key]!r}), not a section"
                    )
                node[key] = {}  # a new tower, param, …: from_dict refuses an unknown one
        else:
            raise ConfigError(
                f"--set {text}: {_dotted(keys[:depth])} is a value ({node!r}), not a section"
            )
        if last:
            node[key] = value
        else:
            node = node[key]


def _dotted(keys: Sequence[str | int]) -> str:
    """The path as config errors write it: ``objectives[0].weight``."""
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else f".{key}" if text else str(key)
    return text


def _culprit(message: str, parsed: list[tuple[list[str | int], Any, str]]) -> str:
    """The ``--set`` whose path the error names (the longest match), else all of them."""
    for cut in range(max(len(keys) for keys, _, _ in parsed)):
        for keys, _, text in reversed(parsed):
            path = _dotted(keys[: len(keys) - cut])
            if path and re.search(rf"(^|[\s'.]){re.escape(path)}\b", message):
                return f"--set {text}"
    return "--set " + " --set ".join(text for _, _, text in parsed)
