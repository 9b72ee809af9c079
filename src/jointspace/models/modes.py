"""Train/eval mode as a context: inference code must not leave a model in the wrong mode."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside the block; afterwards (also on error) the mode the module had before."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
