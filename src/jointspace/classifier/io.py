"""Save and load a classifier head: ``classifier.safetensors`` + ``classifier.json`` (no pickle)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import save

from jointspace._version import __version__
from jointspace.artifacts import load_tensors, read_record
from jointspace.atomic import write_bytes_atomic, write_text_atomic
from jointspace.config import ConfigError, PartConfig, dumps_json, from_dict, to_dict
from jointspace.errors import ArtifactError, JointspaceError
from jointspace.models.fusion import FusionClassifier, build_fusion_head

WEIGHTS_FILE, META_FILE = "classifier.safetensors", "classifier.json"
FORMAT, FORMAT_VERSION = "jointspace-classifier", 1


@dataclass
class ClassifierMeta:
    """What ``classifier.json`` records: enough to rebuild the head and check its towers."""

    classes: list[str]
    modalities: list[str]
    token_dims: dict[str, int]
    head: PartConfig
    inputs: str  # tokens | pooled: what the towers hand the head
    towers_fingerprint: str  # the saved towers' model_fingerprint
    fingerprint: str = ""  # towers + head weights: equal exactly for the same classifier


def weights_fingerprint(towers_fingerprint: str, weights: bytes) -> str:
    """The classifier's fingerprint: a hash of its towers' fingerprint and its head's weights."""
    return hashlib.sha256(towers_fingerprint.encode() + weights).hexdigest()[:16]


def save_classifier(model: FusionClassifier, meta: ClassifierMeta, directory: Path) -> str:
    """Write both files into ``directory`` (each atomically); return the fingerprint."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    weights = save(state, metadata={"format": FORMAT})
    meta.fingerprint = weights_fingerprint(meta.towers_fingerprint, weights)
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jointspace_version": __version__,
        **to_dict(meta),
    }
    write_bytes_atomic(directory / WEIGHTS_FILE, weights)
    write_text_atomic(directory / META_FILE, dumps_json(record))
    return meta.fingerprint


def read_meta(directory: Path) -> ClassifierMeta:
    """``classifier.json`` checked: a missing file is NotFoundError, a damaged one ArtifactError."""
    path = directory / META_FILE
    hint = "train one with `jointspace classify CONFIG --out DIR`"
    record = read_record(path, FORMAT, FORMAT_VERSION, "classifier", hint)
    fields = {k: v for k, v in record.items() if k in ClassifierMeta.__dataclass_fields__}
    try:
        meta = from_dict(ClassifierMeta, fields, "classifier")
    except ConfigError as err:
        raise ArtifactError(f"{path}: damaged: {err}") from None
    if not meta.classes or sorted(meta.token_dims) != sorted(meta.modalities):
        raise ArtifactError(f"{path}: damaged: classes or token_dims do not fit its modalities")
    return meta


def load_classifier(directory: Path) -> tuple[FusionClassifier, ClassifierMeta]:
    """The saved head, in eval mode, and its metadata; its fingerprint is checked."""
    meta = read_meta(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ArtifactError(f"{weights_path}: missing")
    found = weights_fingerprint(meta.towers_fingerprint, weights_path.read_bytes())
    if found != meta.fingerprint:
        raise ArtifactError(
            f"{weights_path}: damaged: its weights do not match the fingerprint in {META_FILE}"
        )
    try:
        model = FusionClassifier(build_fusion_head(meta.head, meta.token_dims), len(meta.classes))
    except JointspaceError as err:
        raise ArtifactError(f"{directory / META_FILE}: damaged head config: {err}") from None
    state = load_tensors(weights_path)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise ArtifactError(f"{weights_path}: weights do not match {META_FILE}: {first}") from None
    return model.eval(), meta
