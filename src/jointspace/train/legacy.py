"""Reading checkpoints of older versions: SigLIP's scale and bias moved from objective to model.

Before, ``objective.safetensors`` held SigLIP's own ``logit_scale`` and ``logit_bias`` and the
optimizer listed them after the model's parameters; now the model owns both.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from jointspace.models.joint import JointModel

LOGITS = ("logit_scale", "logit_bias")


def migrate_objective_logits(
    model: JointModel,
    objective: nn.Module,
    weights: dict[str, torch.Tensor],
    objective_state: dict[str, torch.Tensor],
    optim_state: dict[str, Any],
    optimizer: torch.optim.Optimizer,
) -> dict[str, Any]:
    """Move an old checkpoint's objective logits into ``weights``; returns the optimizer state.

    The bias becomes the model's; the scale too when SigLIP was the only objective (combined
    with CLIP, the model's scale was CLIP's and stays). Nothing changes for a new checkpoint.
    """
    expected = objective.state_dict()
    old = [k for k in objective_state if k.rsplit(".", 1)[-1] in LOGITS and k not in expected]
    if not old or model.logit_bias is None or "logit_bias" in weights:
        return optim_state
    # nn.Module order: each objective part's logit_scale was registered before its logit_bias.
    old.sort(key=lambda k: (k.rpartition(".")[0], LOGITS.index(k.rpartition(".")[2])))
    bias_key = next(k for k in old if k.endswith("logit_bias"))
    renamed = {f"objective.{bias_key}": "model.logit_bias"}
    if bias_key == "logit_bias" and "logit_scale" in objective_state:
        renamed["objective.logit_scale"] = "model.logit_scale"
    for source, target in renamed.items():
        weights[target.removeprefix("model.")] = objective_state[source.removeprefix("objective.")]
    for key in old:
        del objective_state[key]
    return _remap_optimizer(model, objective, optimizer, optim_state, old, renamed)


def _remap_optimizer(model, objective, optimizer, state, old_keys, renamed) -> dict[str, Any]:
    names = {id(p): f"model.{n}" for n, p in model.named_parameters()}
    names |= {id(p): f"objective.{n}" for n, p in objective.named_parameters()}
    new_groups = [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]
    # The old order: the same groups without the model's bias, the objective's logits appended
    # to the group that holds the scale (no weight decay).
    old_groups = [[n for n in group if n != "model.logit_bias"] for group in new_groups]
    home = next(i for i, g in enumerate(old_groups) if "model.logit_scale" in g)
    old_groups[home] += [f"objective.{k}" for k in old_keys]
    saved = state["param_groups"]
    if [len(g) for g in old_groups] != [len(g["params"]) for g in saved]:
        raise ValueError("the optimizer state does not have the old layout")
    old_index = {
        name: index
        for group, saved_group in zip(old_groups, saved, strict=True)
        for name, index in zip(group, saved_group["params"], strict=True)
    }
    source = {new: old for old, new in renamed.items()}
    params, per_param, index = [], {}, 0
    for group, saved_group in zip(new_groups, saved, strict=True):
        indices = []
        for name in group:
            found = old_index.get(source.get(name, name))
            if found is not None and found in state["state"]:
                per_param[index] = state["state"][found]
            indices.append(index)
            index += 1
        params.append({**saved_group, "params": indices})
    return {"state": per_param, "param_groups": params}
