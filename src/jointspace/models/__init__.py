"""Models built from towers: the joint embedding model and its safetensors I/O."""

from jointspace.models.build import build_model
from jointspace.models.io import load, resolve_model_dir, save_model
from jointspace.models.joint import JointModel

__all__ = ["JointModel", "build_model", "load", "resolve_model_dir", "save_model"]
