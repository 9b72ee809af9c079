"""Each sample as a graph of its modality elements (text tokens, image patches, audio frames).

Nodes are the kept tokens, ordered by sample, then modality (the mapping's order), then position.
Intra-modal edges join sequence neighbours, or 4-neighbours on a square grid of patches;
cross-modal edges join each node to its ``k`` nearest nodes (cosine) of every other modality.
Edges are undirected (both directions, each once), without self-loops (the convolutions add
them). ``torch_geometric`` is imported only when a graph is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from jointspace.config import ConfigError

KINDS = ("sequence", "grid")
# How a modality's elements neighbour each other when nothing else is said: patches on a grid.
DEFAULT_KINDS = {"image": "grid"}


def intra_edges(ids: torch.Tensor, keep: torch.Tensor, kind: str) -> torch.Tensor:
    """``[2, E]`` undirected edges (smaller id first) among one modality's kept tokens.

    ``ids`` are the node ids of ``[B, T]`` positions; a sample's kept tokens have consecutive ids,
    so the i-th kept token's sequence neighbour is id + 1 and its grid neighbour below is id + side.
    A grid needs a perfect square count of kept patches (side = sqrt(count)); else a sequence.
    """
    count = keep.sum(1, keepdim=True).expand_as(keep)[keep]
    rank = (keep.cumsum(1) - 1)[keep]
    node = ids[keep]
    side = count.double().sqrt().round().long()  # exact for any count a batch can hold
    grid = (side * side == count) if kind == "grid" else torch.zeros_like(count, dtype=torch.bool)
    # sequence: every token but the last; grid: every patch but a row's last
    right = torch.where(grid, rank % side.clamp_min(1) < side - 1, rank < count - 1)
    down = grid & (rank + side < count)
    sources = torch.cat([node[right], node[down]])
    targets = torch.cat([node[right] + 1, node[down] + side[down]])
    return torch.stack([sources, targets])


def nearest_edges(
    source: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    target: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    k: int,
) -> torch.Tensor:
    """``[2, E]`` edges from each kept source node to its ``k`` nearest kept target nodes of the
    same sample; each side is ``(features [B, T, d], keep [B, T], ids [B, T])``. Cosine of the
    features, without gradient; equal similarities go to the lower position (a stable sort)."""
    (f_s, keep_s, ids_s), (f_t, keep_t, ids_t) = source, target
    with torch.no_grad():
        similarity = F.normalize(f_s.float(), dim=-1) @ F.normalize(f_t.float(), dim=-1).mT
        similarity = similarity.masked_fill(~keep_t.unsqueeze(1), -math.inf)
        ranked, order = torch.sort(similarity, dim=-1, descending=True, stable=True)
    ranked, order = ranked[..., :k], order[..., :k]  # [B, T_s, k]
    valid = keep_s.unsqueeze(-1) & torch.isfinite(ranked)
    nearest = ids_t.gather(1, order.reshape(order.shape[0], -1)).reshape(order.shape)
    return torch.stack([ids_s.unsqueeze(-1).expand_as(order)[valid], nearest[valid]])


def build_graph(
    inputs: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    k: int = 4,
    kinds: Mapping[str, str] | None = None,
) -> Any:
    """A ``torch_geometric.data.Batch`` of one graph per sample from ``{modality: (features
    [B, T, d], keep [B, T])}``: ``x [N, d]`` (the kept features, gradient kept), ``edge_index
    [2, E]`` sorted by (source, target), ``batch [N]``, ``ptr [B + 1]``, ``node_type [N]`` (the
    modality's index in ``inputs``) and ``position [N]`` (the token's index in its sequence).
    ``kinds`` says ``sequence`` or ``grid`` per modality (default: image grid, others sequence)."""
    from torch_geometric.data import Batch

    if not inputs:
        raise ConfigError("graph fusion: no modality given")
    if k < 0:
        raise ConfigError(f"graph fusion: k must be >= 0, not {k}")
    kinds = {**DEFAULT_KINDS, **(kinds or {})}
    if bad := sorted(m for m in inputs if kinds.get(m, "sequence") not in KINDS):
        raise ConfigError(
            f"graph fusion: kind of {bad[0]!r} is {kinds[bad[0]]!r}; it takes {', '.join(KINDS)}"
        )
    modalities = list(inputs)
    features = [inputs[m][0] for m in modalities]
    keeps = [inputs[m][1].bool() for m in modalities]
    if len({f.shape[0] for f in features}) > 1 or len({f.shape[-1] for f in features}) > 1:
        raise ConfigError("graph fusion: every modality needs the same batch size and width")
    batch_size, device = features[0].shape[0], features[0].device
    keep_all = torch.cat(keeps, dim=1)
    samples, columns = keep_all.nonzero(as_tuple=True)  # row-major: sample, modality, position
    nodes = samples.numel()
    ids = torch.full(keep_all.shape, -1, dtype=torch.long, device=device)
    ids[samples, columns] = torch.arange(nodes, device=device)
    lengths = [keep.shape[1] for keep in keeps]
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    types = torch.repeat_interleave(
        torch.arange(len(modalities), device=device), torch.tensor(lengths, device=device)
    )
    side = {
        m: (f, keep, ids[:, s : s + n])
        for m, f, keep, s, n in zip(modalities, features, keeps, starts, lengths, strict=True)
    }
    pairs = [intra_edges(side[m][2], side[m][1], kinds.get(m, "sequence")) for m in modalities]
    pairs += [nearest_edges(side[m], side[o], k) for m in modalities for o in modalities if m != o]
    undirected = torch.cat(pairs, dim=1)
    both = torch.cat([undirected, undirected.flip(0)], dim=1)
    codes = torch.unique(both[0] * max(nodes, 1) + both[1])  # sorted: (source, target) order
    edge_index = torch.stack([codes // max(nodes, 1), codes % max(nodes, 1)])
    counts = torch.bincount(samples, minlength=batch_size)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long, device=device), counts.cumsum(0)])
    return Batch(
        x=torch.cat(features, dim=1)[samples, columns],
        edge_index=edge_index,
        batch=samples,
        ptr=ptr,
        node_type=types[columns],
        position=columns - torch.tensor(starts, device=device)[types[columns]],
    )
