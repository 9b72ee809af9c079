"""Configs to and from plain data: dataclass trees checked and coerced by path, and back."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

from jointspace.errors import JointspaceError

T = TypeVar("T")


class ConfigError(JointspaceError, ValueError):
    """A configuration value or key is wrong; the message names where."""


def to_dict(obj: Any) -> Any:
    """Plain dicts and lists of a dataclass tree (tuples become lists: YAML/JSON have none)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj


def from_dict(cls: type[T], raw: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from plain data, refusing unknown keys and wrong types by path.

    Every field is checked against its declared type (numeric strings such as YAML's ``2e-3``
    become numbers) and against the limits in its metadata.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted((str(k) for k in set(raw) - set(fields)), key=str)
    if unknown:
        raise ConfigError(
            f"unknown key {_join(where, unknown[0])!r}; known keys: {', '.join(sorted(fields))}"
        )
    missing = [
        name
        for name, f in fields.items()
        if name not in raw
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{_join(where, missing[0])}: required, but missing")
    values = {}
    for key, value in raw.items():
        values[key] = _coerce(hints[key], value, _join(where, key))
        _check_limits(fields[key].metadata, values[key], _join(where, key))
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _coerce(options[0], value, where)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_show(value)}")
        return {k: _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()} if args else value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {_show(value)}")
        if origin is tuple and args and Ellipsis not in args:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {_show(value)}")
            pairs = enumerate(zip(args, value, strict=True))
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in pairs)
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint in (int, float, bool):
        return _scalar(hint, value, where)
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{where}: expected str, got {_show(value)}")
    return value


BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _scalar(hint: type, value: Any, where: str) -> Any:
    """``value`` as ``hint``: numbers and numeric strings (YAML reads ``2e-3`` as a string)."""
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in BOOLS:
            return BOOLS[value.strip().lower()]
        raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
    number = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {_show(value)}")
    if not math.isfinite(number):
        raise ConfigError(f"{where}: expected a finite {hint.__name__}, got {_show(value)}")
    if hint is int:
        if isinstance(number, float) and not number.is_integer():
            raise ConfigError(f"{where}: expected int, got {_show(value)}")
        return int(number)
    return float(number)


def _check_limits(limits: Any, value: Any, where: str) -> None:
    if not limits or value is None:
        return
    if isinstance(value, dict):  # limits apply to each value
        for key, item in value.items():
            _check_limits(limits, item, f"{where}.{key}")
        return
    for i, item in enumerate(value if isinstance(value, list) else [value]):
        at = f"{where}[{i}]" if isinstance(value, list) else where
        if "choices" in limits and item not in limits["choices"]:
            options = ", ".join(limits["choices"])
            raise ConfigError(f"{at}: must be one of {options}, got {_show(item)}")
        if "min" in limits and item < limits["min"]:
            raise ConfigError(f"{at}: must be at least {limits['min']}, got {_show(item)}")
        if "max" in limits and item > limits["max"]:
            raise ConfigError(f"{at}: must be at most {limits['max']}, got {_show(item)}")
        if "gt" in limits and item <= limits["gt"]:
            raise ConfigError(f"{at}: must be greater than {limits['gt']}, got {_show(item)}")


def _show(value: Any) -> str:
    """A short rendering of a config value for messages (YAML-like, truncated)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
