"""jointspace: learn, evaluate and serve joint embedding spaces."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jointspace._lazy import lazy_exports
from jointspace._version import __version__

# Public name → module that defines it. Imported on first use (PEP 562) so that
# `import jointspace.cli` (hence `jointspace --help`) does not pay for torch.
_LAZY = {
    "ExperimentConfig": "jointspace.config",
    "builtin_config": "jointspace.config",
    "build_dataset": "jointspace.data",
    "read_manifest": "jointspace.data",
    "JointModel": "jointspace.models",
    "build_model": "jointspace.models",
    "load": "jointspace.runs.run",
    "Run": "jointspace.runs.run",
    "evaluate_model": "jointspace.evaluate",
    "fit": "jointspace.runs.fit",
    "load_manifest": "jointspace.data",
    "Trainer": "jointspace.train",
    "TrainResult": "jointspace.train",
}

__all__ = [
    "ExperimentConfig",
    "JointModel",
    "Run",
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

if TYPE_CHECKING:
    from jointspace.config import ExperimentConfig, builtin_config
    from jointspace.data import build_dataset, load_manifest, read_manifest
    from jointspace.evaluate import evaluate_model
    from jointspace.models import JointModel, build_model
    from jointspace.runs.fit import fit
    from jointspace.runs.run import Run, load
    from jointspace.train import Trainer, TrainResult


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
