"""Graph fusion: message passing (GAT or GCN) over a graph of every given modality's elements.

The graph of each sample comes from :func:`jointspace.models.fusion_graph.build_graph`;
``torch_geometric`` is imported only when a head is built.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from jointspace.config import ConfigError
from jointspace.models.fusion import FusionHead, Inputs
from jointspace.models.fusion_graph import build_graph

CONVS = ("gat", "gcn")
READOUTS = ("attention", "mean")


class GraphFusion(FusionHead):
    """Nodes: each given modality's kept tokens, projected to ``width`` plus a learned type
    embedding; edges: sequence/grid neighbours within a modality and the ``k`` nearest nodes of
    every other modality. ``layers`` GAT (``heads`` heads) or GCN convolutions, each a residual
    step followed by a layer norm, then an attention (or mean) readout over each sample's nodes."""

    def __init__(
        self,
        dims: Mapping[str, int],
        width: int = 128,
        layers: int = 2,
        k: int = 4,
        heads: int = 4,
        conv: str = "gat",
        readout: str = "attention",
    ):
        super().__init__(dims, width)
        from torch_geometric.nn import GATConv, GCNConv
        from torch_geometric.nn.aggr import AttentionalAggregation, MeanAggregation

        if conv not in CONVS:
            raise ConfigError(f"head.params.conv: graph fusion takes gat or gcn, not {conv!r}")
        if readout not in READOUTS:
            raise ConfigError(
                f"head.params.readout: graph fusion takes attention or mean, not {readout!r}"
            )
        if conv == "gat" and width % heads:
            raise ConfigError(f"graph fusion: width {width} is not divisible by heads {heads}")
        if k < 0 or layers < 1:
            raise ConfigError(f"graph fusion: needs k >= 0 and layers >= 1, not {k}, {layers}")
        self.k = k
        self.types = nn.Parameter(torch.randn(len(self.modalities), width) * 0.02)
        self.convs = nn.ModuleList(
            GATConv(width, width // heads, heads=heads) if conv == "gat" else GCNConv(width, width)
            for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(layers))
        self.act = nn.GELU()
        self.readout = (
            AttentionalAggregation(nn.Linear(width, 1))
            if readout == "attention"
            else MeanAggregation()
        )

    def graph(self, inputs: Inputs):  # -> torch_geometric.data.Batch
        """The batch of graphs the head passes messages on (node features: projection + type)."""
        used = self.present(inputs)
        graph = build_graph(
            {m: (self.project[m](inputs[m][0]), inputs[m][1]) for m in used}, self.k
        )
        order = torch.tensor([self.modalities.index(m) for m in used], device=graph.x.device)
        graph.x = graph.x + self.types[order[graph.node_type]]
        return graph

    def forward(self, inputs: Inputs) -> tuple[torch.Tensor, list[str]]:
        used = self.present(inputs)
        graph = self.graph(inputs)
        x = graph.x
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = norm(x + self.act(conv(x, graph.edge_index)))
        # A sample with no kept token has no node: its row is the readout's empty value (zeros).
        fused = self.readout(x, graph.batch, dim_size=graph.num_graphs)
        return fused, used
