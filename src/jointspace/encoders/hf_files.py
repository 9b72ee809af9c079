"""Local Hugging Face checkpoint directories: find, check and read them, never the hub."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from jointspace.config import ConfigError
from jointspace.errors import MissingPackageError, NotFoundError

# Small files copied verbatim into a saved model (and out again by `export --to hf`).
TEXT_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
IMAGE_FILES = ("preprocessor_config.json",)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
# Dual encoders whose halves jointspace wraps with their own projections.
CLIP_TYPES = ("clip", "siglip")
LAYER_LISTS = ("layers", "layer", "blocks", "stages")


def transformers_module() -> Any:
    """``transformers``, offline (``HF_HUB_OFFLINE=1``) and without progress bars."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub at run time
    try:
        import transformers
    except ImportError as err:
        raise MissingPackageError("Hugging Face towers need `pip install transformers`") from err
    transformers.utils.logging.disable_progress_bar()
    return transformers


def checkpoint_dir(path: str | Path, needs: tuple[str, ...] = (), *, what: str = "") -> Path:
    """``path`` as a local checkpoint directory holding config.json, weights and ``needs``.

    Anything missing is one ``NotFoundError`` saying which file belongs where.
    """
    directory = Path(path).expanduser()
    what = what or "a Hugging Face checkpoint"
    if not directory.is_dir():
        raise NotFoundError(
            f"{directory}: no such directory; put {what} there (config.json, model.safetensors"
            f"{', ' + ', '.join(needs) if needs else ''}), e.g. with save_pretrained(DIR) — "
            "nothing is downloaded"
        )
    if not (directory / "config.json").is_file():
        raise NotFoundError(f"{directory}: config.json missing; it must hold {what}")
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise NotFoundError(
            f"{directory}: no weights (model.safetensors or pytorch_model.bin); save the model "
            "there with save_pretrained(DIR)"
        )
    for name in needs:
        if not (directory / name).is_file():
            raise NotFoundError(f"{directory}: {name} missing; {_hint(name)}")
    return directory


def _hint(name: str) -> str:
    if name == "tokenizer.json":
        return (
            "a fast tokenizer writes it: AutoTokenizer.from_pretrained(SOURCE).save_pretrained(DIR)"
        )
    if name == "preprocessor_config.json":
        return (
            "the image processor writes it: AutoImageProcessor.from_pretrained(SOURCE)"
            ".save_pretrained(DIR)"
        )
    return "copy it from the original checkpoint"


def read_json_file(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a broken file is a ConfigError naming it."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return value


def model_type(directory: Path) -> str:
    """The checkpoint's ``model_type`` (config.json), lower case."""
    return str(read_json_file(directory / "config.json").get("model_type", "")).lower()


def dual_kind(directory: Path) -> str:
    """``clip`` or ``siglip``: how the checkpoint's towers pool and project."""
    kind = model_type(directory)
    if kind not in CLIP_TYPES:
        raise ConfigError(
            f"{directory}: model_type {kind or 'none'!r} is not a CLIP or SigLIP dual encoder "
            f"({', '.join(CLIP_TYPES)}); for a single text or vision encoder use the towers "
            "hf_text / hf_vision"
        )
    return kind


def read_files(directory: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The bytes of each of ``names`` present in ``directory``."""
    return {name: (directory / name).read_bytes() for name in names if (directory / name).is_file()}


def write_files(directory: Path, files: dict[str, bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)


def find_layers(module: nn.Module) -> list[nn.Module]:
    """The longest ``ModuleList`` named like an encoder's block list (layers, layer, blocks…)."""
    best: list[nn.Module] = []
    for name, child in module.named_modules():
        named = isinstance(child, nn.ModuleList) and name.rsplit(".", 1)[-1] in LAYER_LISTS
        if named and len(child) > len(best):
            best = list(child)
    if not best:
        raise NotImplementedError(f"{type(module).__name__}: no list of encoder layers found")
    return best


def load_pretrained(directory: Path) -> nn.Module:
    """``AutoModel.from_pretrained`` of a local directory (weights included)."""
    transformers = transformers_module()
    try:
        return transformers.AutoModel.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"{directory}: transformers cannot load it: {err}") from None


def from_config(directory: Path) -> nn.Module:
    """The architecture saved in ``directory/config.json``, randomly initialised (weights come
    from a saved jointspace model)."""
    transformers = transformers_module()
    config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
    return transformers.AutoModel.from_config(config)
