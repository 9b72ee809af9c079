"""Named registries: parts are chosen by name in a config (``@register("objective", "clip")``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {}


def register(kind: str, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that makes a class or factory buildable as ``build(kind, name, ...)``."""

    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        table = _REGISTRY.setdefault(kind, {})
        if name in table and table[name] is not factory:
            raise ValueError(f"{kind} {name!r} is already registered by {table[name]!r}")
        table[name] = factory
        return factory

    return decorate


def available(kind: str) -> list[str]:
    """Names registered for ``kind``, sorted."""
    _load_builtins()
    return sorted(_REGISTRY.get(kind, {}))


def lookup(kind: str, name: str) -> Callable[..., Any]:
    """The factory registered as ``name``; a clear error lists the known names otherwise."""
    _load_builtins()
    table = _REGISTRY.get(kind, {})
    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        raise KeyError(f"unknown {kind} {name!r}; known {kind}s: {known}")
    return table[name]


def build(kind: str, name: str, **params: Any) -> Any:
    """Build the part registered as ``name`` with keyword ``params``."""
    factory = lookup(kind, name)
    try:
        return factory(**params)
    except TypeError as err:
        raise TypeError(f"cannot build {kind} {name!r} with {sorted(params)}: {err}") from err


def _load_builtins() -> None:
    # Importing the packages runs their @register lines; done lazily to keep import order free.
    from jointspace import encoders, objectives  # noqa: F401
    from jointspace.data import builtin, formats  # noqa: F401
