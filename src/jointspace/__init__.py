"""jointspace: learn, evaluate and serve joint embedding spaces."""

__version__ = "0.1.0"

from jointspace.config import ExperimentConfig, builtin_config
from jointspace.data import build_dataset, read_manifest
from jointspace.models import JointModel, build_model, load
from jointspace.pipeline import evaluate_model, fit, load_manifest
from jointspace.train import Trainer, TrainResult

__all__ = [
    "ExperimentConfig",
    "JointModel",
    "TrainResult",
    "Trainer",
    "__version__",
    "build_dataset",
    "build_model",
    "builtin_config",
    "evaluate_model",
    "fit",
    "load",
    "load_manifest",
    "read_manifest",
]
