"""Save and load models as ``config.json`` + ``model.safetensors`` + tower assets."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from pathlib import Path

from jointspace._version import __version__
from jointspace.artifacts import load_tensors, read_json, save_tensors
from jointspace.atomic import atomic_dir, write_bytes
from jointspace.config import ConfigError, ModelConfig, dumps_json, from_dict
from jointspace.errors import ArtifactError, NotFoundError
from jointspace.models.build import build_model
from jointspace.models.joint import JointModel
from jointspace.models.pretrained import is_dual_checkpoint

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
FORMAT = "jointspace-model"
# config.json's model_type, the key transformers and sentence-transformers read first: an unknown
# type stops them with "has model type `<this>` but Transformers does not recognize this
# architecture", so the text says what the folder is and how to get a model they load.
MODEL_TYPE = (
    "jointspace (a jointspace model, not a Transformers one: run `jointspace export RUN "
    "--to sentence-transformers DIR`, or --to onnx DIR / --to hf DIR, to get one other tools load)"
)


def save_model(model: JointModel, directory: str | Path) -> Path:
    """Write the model directory atomically: a crash leaves the previous model intact.

    A saved model is self-contained: it holds every weight, frozen towers' included.
    """
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        write_model_files(model, tmp)
    return directory


def write_model_files(
    model: JointModel, directory: Path, keys: Collection[str] | None = None
) -> None:
    """Write the model files into an existing directory (used inside checkpoints too).

    ``keys`` limits the weights written (a checkpoint leaves out frozen towers' weights).
    """
    meta = {
        "format": FORMAT,
        "model_type": MODEL_TYPE,
        "jointspace_version": __version__,
        "model": model.config,
    }
    write_bytes(directory / CONFIG_FILE, dumps_json(meta).encode())
    state = {
        k: v.detach().contiguous().cpu()
        for k, v in model.state_dict().items()
        if keys is None or k in keys
    }
    save_tensors(directory / WEIGHTS_FILE, state, metadata={"format": FORMAT})
    for tower in model.towers.values():
        tower.save_assets(directory)


def resolve_model_dir(path: str | Path) -> Path:
    """Accept a model directory or a training run directory (whose model lives in ``model/``)."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise NotFoundError(f"no jointspace model at {path} (expected {CONFIG_FILE} there)")


def load(path: str | Path, device: str = "cpu") -> JointModel:
    """Load a saved model; embeddings are identical to the model that was saved.

    A damaged directory (broken JSON, truncated or NaN weights) is one ``ArtifactError``.
    A Hugging Face CLIP/SigLIP directory loads as the model ``model.pretrained: DIR`` builds.
    """
    directory = resolve_model_dir(path)
    if is_dual_checkpoint(directory):
        return build_model(ModelConfig(pretrained=str(directory))).to(device).eval()
    config = read_model_config(directory)
    try:
        model = build_model(config, assets_dir=directory)
    except (ValueError, OSError) as err:  # e.g. a tower's asset file was deleted
        raise ArtifactError(f"{directory}: damaged model directory: {err}") from None
    weights = directory / WEIGHTS_FILE
    load_weights(model, weights, load_tensors(weights))
    return model.to(device).eval()


def read_model_config(directory: Path) -> ModelConfig:
    """The ``ModelConfig`` in ``directory/config.json``, after checking every JSON asset there."""
    path = directory / CONFIG_FILE
    meta = read_json(path)
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a jointspace model config")
    for asset in sorted(directory.rglob("*.json")):  # e.g. a garbage tokenizer.json
        if asset != path and asset.stat().st_size < 1 << 28:
            read_json(asset)
    try:
        return from_dict(ModelConfig, meta.get("model"), "model")
    except ConfigError as err:
        raise ArtifactError(f"{path}: damaged: {err}") from None


def load_weights(
    model: JointModel, weights: Path, state: dict, *, missing: Collection[str] = ()
) -> None:
    """Load ``state`` into ``model``; only the keys in ``missing`` may be absent from it."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        # torch lists every mismatching tensor; keep the last line, it names the problem.
        first = str(err).strip().splitlines()[-1].strip()
        raise ArtifactError(f"{weights}: weights do not match {CONFIG_FILE}: {first}") from None
    absent = sorted(set(result.missing_keys) - set(missing))
    if absent or result.unexpected_keys:
        name = (absent or result.unexpected_keys)[0]
        problem = "missing" if absent else "unexpected"
        raise ArtifactError(f"{weights}: weights do not match {CONFIG_FILE}: {problem} {name!r}")


def model_fingerprint(model_dir: str | Path) -> str:
    """A short hash of a saved model's weights and config: equal exactly for the same model."""
    directory = resolve_model_dir(model_dir)
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        with open(directory / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
