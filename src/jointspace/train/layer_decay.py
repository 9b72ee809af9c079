"""Layer-wise learning-rate decay (BEiT, ELECTRA): lower layers of a pretrained tower move less.

A parameter's lr is ``lr × decay^depth``, its depth counted from the top of its tower: the head
is 0, the last of ``Tower.layers()`` 1, the first ``len(layers)``, embeddings below it one more.
"""

from __future__ import annotations

import logging

from torch import nn

from jointspace.encoders.base import Tower

log = logging.getLogger("jointspace")


def parameter_depths(modules: list[nn.Module]) -> dict[int, int]:
    """``id(parameter) → depth`` for every tower parameter; other parameters are depth 0.

    Parameters outside the layers take their place in registration order: before the first
    layer (embeddings) one below it, between or after layers (final norms) the layer's before.
    """
    depths: dict[int, int] = {}
    for module in modules:
        for tower in module.modules():
            if isinstance(tower, Tower):
                depths.update(_tower_depths(tower))
    return depths


def _tower_depths(tower: Tower) -> dict[int, int]:
    try:
        layers = tower.layers()
    except NotImplementedError:
        log.info(
            "train.layer_decay: %s lists no layers: it trains at the full lr", type(tower).__name__
        )
        return {}
    count = len(layers)
    in_layer = {id(p): count - i for i, layer in enumerate(layers) for p in layer.parameters()}
    head = {id(p) for p in tower.head.parameters()}
    depths: dict[int, int] = {}
    current = count + 1  # below the first layer until one is seen
    for param in tower.parameters():
        key = id(param)
        if key in head:
            depths[key] = 0
        elif key in in_layer:
            current = depths[key] = in_layer[key]
        else:
            depths[key] = current
    return depths


def lr_scale(decay: float, depth: int) -> float:
    """The lr multiplier of a parameter ``depth`` below the top."""
    return decay**depth
