"""Save and load a trained MVAE: ``mvae.safetensors`` + ``mvae.json`` (no pickle)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from safetensors.torch import save

from jointspace._version import __version__
from jointspace.artifacts import load_tensors, read_record
from jointspace.atomic import write_bytes_atomic, write_text_atomic
from jointspace.config import dumps_json
from jointspace.errors import ArtifactError, JointspaceError
from jointspace.models.mvae import ModalitySpec, MultimodalVAE

WEIGHTS_FILE, META_FILE = "mvae.safetensors", "mvae.json"
FORMAT, FORMAT_VERSION = "jointspace-mvae", 1


def save_mvae(model: MultimodalVAE, hidden: int, directory: Path) -> str:
    """Write both files into ``directory`` (each atomically); return the weights' fingerprint."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    weights = save(state, metadata={"format": FORMAT})
    fingerprint = hashlib.sha256(weights).hexdigest()[:16]
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jointspace_version": __version__,
        "latent": model.latent,
        "hidden": hidden,
        "modalities": {
            m: {"likelihood": s.likelihood, "shape": list(s.shape), "weight": s.weight}
            for m, s in model.specs.items()
        },
        "fingerprint": fingerprint,
    }
    write_bytes_atomic(directory / WEIGHTS_FILE, weights)
    write_text_atomic(directory / META_FILE, dumps_json(record))
    return fingerprint


def load_mvae(directory: Path) -> tuple[MultimodalVAE, str]:
    """The saved model in eval mode and its fingerprint; missing or damaged files are refused."""
    path = directory / META_FILE
    hint = "train one with `jointspace mvae CONFIG --out DIR`"
    record = read_record(path, FORMAT, FORMAT_VERSION, "MVAE", hint)
    try:
        specs = {
            m: ModalitySpec(str(s["likelihood"]), tuple(int(n) for n in s["shape"]),
                            float(s["weight"]))
            for m, s in dict(record["modalities"]).items()
        }  # fmt: skip
        model = MultimodalVAE(specs, latent=int(record["latent"]), hidden=int(record["hidden"]))
    except (KeyError, TypeError, ValueError, JointspaceError) as err:
        raise ArtifactError(f"{path}: damaged: {type(err).__name__}: {err}") from None
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ArtifactError(f"{weights_path}: missing")
    if hashlib.sha256(weights_path.read_bytes()).hexdigest()[:16] != record.get("fingerprint"):
        raise ArtifactError(
            f"{weights_path}: damaged: its weights do not match the fingerprint in {META_FILE}"
        )
    try:
        model.load_state_dict(load_tensors(weights_path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise ArtifactError(f"{weights_path}: weights do not match {META_FILE}: {first}") from None
    return model.eval(), str(record["fingerprint"])
