"""Read and write the files jointspace makes; damage is one ``ArtifactError`` naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from jointspace.atomic import write_bytes
from jointspace.errors import ArtifactError, NotFoundError


def read_json(path: Path, kind: type = dict) -> Any:
    """Parse a JSON file we wrote; a missing, broken or wrong-shaped one is an ArtifactError."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing") from None
    except UnicodeDecodeError:
        raise ArtifactError(f"{path}: damaged (not UTF-8 text)") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ArtifactError(f"{path}: damaged JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(value, kind):
        raise ArtifactError(
            f"{path}: damaged: expected a JSON {_json_name(kind)}, got a {_json_name(type(value))}"
        )
    return value


def read_record(path: Path, fmt: str, version: int, what: str, hint: str) -> dict[str, Any]:
    """A versioned JSON record we wrote (``format``, ``format_version``): missing is a
    NotFoundError saying ``hint``; another format, version or damage is an ArtifactError."""
    if not path.is_file():
        raise NotFoundError(f"no {what} at {path.parent} ({path.name} missing); {hint}")
    record: dict[str, Any] = read_json(path)
    if record.get("format") != fmt:
        raise ArtifactError(f"{path}: damaged: not a jointspace {what} ({fmt!r} expected)")
    if record.get("format_version") != version:
        raise ArtifactError(
            f"{path}: format version {record.get('format_version')!r}; this jointspace reads "
            f"version {version}"
        )
    return record


def _json_name(kind: type) -> str:
    return {dict: "object", list: "list", str: "string"}.get(kind, kind.__name__)


def save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write a safetensors file from Python, so a full disk is an OSError that we translate."""
    # safetensors' own save_file writes in Rust and reports ENOSPC as an opaque error.
    write_bytes(path, save(tensors, metadata=metadata))


def load_tensors(path: Path, *, finite: bool = True) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; truncated, garbage or NaN/inf ones are refused."""
    if not path.is_file():
        raise ArtifactError(f"{path}: missing")
    try:
        tensors = load_file(str(path))
    except OSError:
        raise
    except (SafetensorError, ValueError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArtifactError(f"{path}: damaged or truncated safetensors file ({reason})") from None
    if finite:
        check_finite(path, tensors)
    return tensors


def check_finite(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse NaN/inf weights: they give empty or meaningless results without any error."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ArtifactError(f"{path}: tensor {name!r} holds NaN or infinite values")
