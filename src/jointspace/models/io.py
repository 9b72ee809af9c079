"""Save and load models as ``config.json`` + ``model.safetensors`` + tower assets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from jointspace import __version__
from jointspace.atomic import atomic_dir
from jointspace.config import ConfigError, ModelConfig, dumps_json, from_dict
from jointspace.models.build import build_model
from jointspace.models.joint import JointModel

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
FORMAT = "jointspace-model"


def save_model(model: JointModel, directory: str | Path) -> Path:
    """Write the model directory atomically: a crash leaves the previous model intact."""
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        write_model_files(model, tmp)
    return directory


def write_model_files(model: JointModel, directory: Path) -> None:
    """Write the model files into an existing directory (used inside checkpoints too)."""
    meta = {"format": FORMAT, "jointspace_version": __version__, "model": model.config}
    (directory / CONFIG_FILE).write_text(dumps_json(meta))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT})
    for tower in model.towers.values():
        tower.save_assets(directory)


def resolve_model_dir(path: str | Path) -> Path:
    """Accept a model directory or a training run directory (whose model lives in ``model/``)."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise FileNotFoundError(f"no jointspace model at {path} (expected {CONFIG_FILE} there)")


def load(path: str | Path, device: str = "cpu") -> JointModel:
    """Load a saved model; embeddings are identical to the model that was saved."""
    directory = resolve_model_dir(path)
    meta = json.loads((directory / CONFIG_FILE).read_text())
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{directory / CONFIG_FILE}: not a jointspace model config")
    config = from_dict(ModelConfig, meta["model"], "model")
    model = build_model(config, assets_dir=directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"model weights not found: {weights}")
    try:
        model.load_state_dict(load_file(str(weights)))
    except RuntimeError as err:
        # torch lists every mismatching tensor; keep the first line, it names the problem.
        first = str(err).strip().splitlines()[-1].strip()
        raise ConfigError(f"{weights}: weights do not match {CONFIG_FILE}: {first}") from None
    return model.to(device).eval()


def model_fingerprint(model_dir: str | Path) -> str:
    """A short hash of a saved model's weights and config: equal exactly for the same model."""
    directory = resolve_model_dir(model_dir)
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        with open(directory / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
