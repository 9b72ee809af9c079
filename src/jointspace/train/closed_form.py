"""Closed-form training: fit linear CCA on the towers' features and make it their heads."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from jointspace.config import ConfigError
from jointspace.data.complete import left_out_note, rows_having
from jointspace.data.manifest import Manifest
from jointspace.models.embedding import distinct_items, embed_items, per_row
from jointspace.models.joint import JointModel
from jointspace.objectives.cca import LinearCCA
from jointspace.progress import logger


@torch.no_grad()
def head_inputs(model: JointModel, manifest: Manifest, modality: str, batch_size: int = 256):
    """What each row's ``modality`` tower feeds its projection head (pooled features).

    Each distinct item runs through the tower once (five captions of one image: one image pass).
    """
    tower = model.tower(modality)
    values, _ = distinct_items(manifest, modality)
    captured: list[torch.Tensor] = []
    hook = tower.head.register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    try:
        # In input order (bucket=False): the hook sees the batches as they run.
        embed_items(model, manifest, modality, values, batch_size=batch_size, bucket=False)
    finally:
        hook.remove()
    features = torch.cat(captured).double().cpu().numpy()
    return per_row(manifest, modality, values, features)


def fit_linear_cca(
    model: JointModel,
    train: Manifest,
    modalities: tuple[str, str],
    reg: float = 1e-3,
    after_head: bool = False,
) -> LinearCCA:
    """Replace both towers' heads by CCA projections fitted on ``train``'s paired rows.

    ``after_head``: fit on the heads' outputs and fold CCA into each head's last layer, the
    linear step that deep CCA needs after training (Andrew et al. 2013). Rows lacking one of
    the two modalities (an empty cell) are left out: CCA needs pairs."""
    train, left_out = rows_having(train, modalities)
    if left_out:
        logger().info("linear CCA: %s", left_out_note(left_out, modalities))
    if after_head:
        features = [
            per_row(train, m, *embed_items(model, train, m, normalize=False)).astype(np.float64)
            for m in modalities
        ]
    else:
        features = [head_inputs(model, train, m) for m in modalities]
    cca = LinearCCA(n_components=model.config.embed_dim, reg=reg).fit(*features)
    if len(cca.correlations_) < model.config.embed_dim:
        dims = [f.shape[1] for f in features]
        raise ConfigError(
            f"linear CCA gives at most {min(dims)} components (feature dims {dims}); "
            f"lower model.embed_dim ({model.config.embed_dim}) to use it"
        )
    weights = (cca.x_weights_, cca.y_weights_)
    means = (cca.mean_x_, cca.mean_y_)
    for modality, w, mean in zip(modalities, weights, means, strict=True):
        tower = model.tower(modality)
        tower.head = _fold(tower.head, w, mean) if after_head else _affine(w, mean)
        if tower.locked:
            tower.unlocked[0] = tower.head  # lock() keeps the head first among trainable parts
        if isinstance(tower.head, nn.Linear):  # saved configs must rebuild a head with a bias
            tower.params["head"] = model.config.towers[modality].params["head"] = "affine"
    return cca


def _affine(weights: np.ndarray, mean: np.ndarray) -> nn.Linear:
    # (x − mean) @ W as one Linear layer: weight Wᵀ, bias −mean @ W.
    layer = nn.Linear(weights.shape[0], weights.shape[1], bias=True)
    layer.weight.data = torch.tensor(weights.T, dtype=torch.float32)
    layer.bias.data = torch.tensor(-(mean @ weights), dtype=torch.float32)
    return layer


@torch.no_grad()
def _fold(head: nn.Module, weights: np.ndarray, mean: np.ndarray) -> nn.Module:
    # CCA after a Linear layer (x Aᵀ + c) is one Linear layer: weight (A ᵀW)ᵀ, bias (c − mean) W.
    last = head if isinstance(head, nn.Linear) else head[-1]
    w = torch.tensor(weights, dtype=torch.float64)
    a = last.weight.double()
    c = last.bias.double() if last.bias is not None else torch.zeros(a.shape[0], dtype=a.dtype)
    folded = nn.Linear(a.shape[1], w.shape[1], bias=True)
    folded.weight.data = (a.T @ w).T.float()
    folded.bias.data = ((c - torch.tensor(mean)) @ w).float()
    if isinstance(head, nn.Linear):
        return folded
    head[-1] = folded
    return head
