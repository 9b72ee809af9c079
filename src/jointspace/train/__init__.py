"""Training: the Trainer loop, optimizer and schedule, atomic checkpoints."""

from jointspace.train.trainer import Trainer, TrainResult

__all__ = ["TrainResult", "Trainer"]
