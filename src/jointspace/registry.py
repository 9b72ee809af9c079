"""Named parts chosen in a config: ``build("objective", "clip", **params)`` for every kind.

Built-in parts come from the explicit table in :mod:`jointspace.parts` and are imported on first
look-up; ``register`` adds a user's own part. Importing a module registers nothing.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from jointspace.errors import JointspaceError
from jointspace.parts import BUILTIN_PARTS, PLURALS

Factory = Callable[..., Any]
# The user's own parts: a factory, or a "module:attribute" imported on first look-up.
_USER: dict[str, dict[str, Factory | str]] = {}
_LOADED: dict[tuple[str, str], Factory] = {}


class PartParamsError(JointspaceError, TypeError):
    """A part was given parameters its factory does not take."""


class UnknownPartError(JointspaceError, KeyError):
    """No part of that kind has that name; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def register(kind: str, name: str, factory: Factory | str | None = None) -> Any:
    """Make ``factory`` (a callable or ``"module:attribute"``) buildable as ``build(kind, name)``.

    Without ``factory`` it is a decorator: ``@register("objective", "mine")``.
    """

    def add(target: Factory | str) -> Factory | str:
        known = _target(kind, name)
        if known is not None and known != target and _LOADED.get((kind, name)) is not target:
            raise ValueError(f"{kind} {name!r} is already registered as {known!r}")
        _USER.setdefault(kind, {})[name] = target
        _LOADED.pop((kind, name), None)
        return target

    return add if factory is None else add(factory)


def unregister(kind: str, name: str) -> None:
    """Remove a part ``register`` added (built-in parts stay)."""
    _USER.get(kind, {}).pop(name, None)
    _LOADED.pop((kind, name), None)


def kinds() -> list[str]:
    """Every kind of part, sorted."""
    return sorted({*BUILTIN_PARTS, *_USER})


def available(kind: str) -> list[str]:
    """Names known for ``kind`` (built-in and registered), sorted; nothing is imported."""
    return sorted({*BUILTIN_PARTS.get(kind, {}), *_USER.get(kind, {})})


def lookup(kind: str, name: str) -> Factory:
    """The factory named ``name``, imported now; ``UnknownPartError`` lists the known names."""
    if (kind, name) in _LOADED:
        return _LOADED[(kind, name)]
    target = _target(kind, name)
    if target is None:
        known = ", ".join(available(kind)) or "none"
        plural = PLURALS.get(kind, f"{kind}s")
        raise UnknownPartError(f"unknown {kind} {name!r}; known {plural}: {known}")
    factory = _import(target) if isinstance(target, str) else target
    _LOADED[(kind, name)] = factory
    return factory


def build(kind: str, name: str, /, **params: Any) -> Any:
    """Build the part ``name`` of ``kind`` with keyword ``params``."""
    factory = lookup(kind, name)
    try:
        # Check the parameters against the signature first: a TypeError raised inside the
        # factory is a bug and keeps its traceback; a wrong parameter name is the user's.
        inspect.signature(factory).bind(**params)
    except TypeError as err:
        raise PartParamsError(
            f"cannot build {kind} {name!r} with {sorted(params)}: {err}"
        ) from None
    except ValueError:
        pass  # no signature to check (a builtin): let the call say
    return factory(**params)


def _target(kind: str, name: str) -> Factory | str | None:
    user = _USER.get(kind, {})
    return user[name] if name in user else BUILTIN_PARTS.get(kind, {}).get(name)


def _import(target: str) -> Factory:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
