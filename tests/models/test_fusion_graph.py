"""Graph fusion: the graph each sample becomes (nodes, edges by hand and by a naive reference),
and the head on it: padding never matters, a missing modality still answers, XOR is learned."""

import itertools
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from test_fusion import DIMS, inputs, padded, xor_scores

from jointspace.config import ConfigError, PartConfig
from jointspace.models.fusion import build_fusion_head
from jointspace.models.fusion_graph import build_graph
from jointspace.models.graph_fusion import GraphFusion


def edges(graph):
    return [tuple(e) for e in graph.edge_index.T.tolist()]


def both_ways(pairs):
    return sorted({*pairs, *((b, a) for a, b in pairs)})


def test_a_hand_sized_graph_has_exactly_the_edges_counted_by_hand():
    """Image: a 2x2 grid of patches (nodes 0-3); text: 3 kept tokens and one padded (nodes 4-6)."""
    image = torch.tensor([[[1.0, 0.1], [0.1, 1.0], [-1.0, 0.0], [0.0, -1.0]]])
    text = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1e3, -1e3]]])
    graph = build_graph(
        {
            "image": (image, torch.ones(1, 4, dtype=torch.bool)),
            "text": (text, torch.tensor([[True, True, True, False]])),
        },
        k=1,
    )
    grid = [(0, 1), (2, 3), (0, 2), (1, 3)]  # rows, then columns
    sequence = [(4, 5), (5, 6)]
    # nearest by cosine, k=1: image 0->text 0, 1->text 1, 2 (-1,0)->text 1 (cos 0 is the largest),
    # 3 (0,-1)->text 0; text 0->image 0 and 1->image 1 (both already there), text 2 (1,1) is
    # equally near image 0 and 1: the lower position wins -> image 0.
    cross = [(0, 4), (1, 5), (2, 5), (3, 4), (0, 6)]
    assert edges(graph) == both_ways(grid + sequence + cross)
    assert graph.edge_index.shape == (2, 2 * (4 + 2 + 5))
    assert graph.node_type.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert graph.position.tolist() == [0, 1, 2, 3, 0, 1, 2]
    assert graph.batch.tolist() == [0] * 7 and graph.ptr.tolist() == [0, 7]
    torch.testing.assert_close(graph.x, torch.cat([image[0], text[0, :3]]))


def reference_edges(given, k, kinds):
    """The spec, sample by sample in plain Python: node ids, intra and cross edges (undirected)."""
    found, offset = set(), 0
    for b in range(next(iter(given.values()))[0].shape[0]):
        nodes = {}  # modality -> [(node id, feature)]
        for m, (states, keep) in given.items():
            kept = [t for t in range(states.shape[1]) if keep[b, t]]
            nodes[m] = [(offset + i, states[b, t]) for i, t in enumerate(kept)]
            offset += len(kept)
        for m, listed in nodes.items():
            ids, count = [i for i, _ in listed], len(listed)
            side = round(count**0.5)
            if kinds.get(m) == "grid" and side * side == count:
                for r in range(count):
                    if r % side < side - 1:
                        found.add((ids[r], ids[r + 1]))
                    if r + side < count:
                        found.add((ids[r], ids[r + side]))
            else:
                found.update(itertools.pairwise(ids))
        for m in nodes:
            for o in nodes:
                if o == m:
                    continue
                for i, feature in nodes[m]:
                    cosines = [
                        (-F.cosine_similarity(feature, f, dim=0).item(), position, j)
                        for position, (j, f) in enumerate(nodes[o])
                    ]
                    for _, _, j in sorted(cosines)[:k]:
                        found.add((min(i, j), max(i, j)))
    return both_ways(found)


def ragged(seed=0, batch=5):
    """Random features (no ties) with ragged keeps: some rows padded, one with no image at all."""
    generator = torch.Generator().manual_seed(seed)
    lengths = {"text": 6, "image": 9, "audio": 5}
    keeps = {}
    for m, n in lengths.items():
        kept = torch.randint(0, n + 1, (batch,), generator=generator)
        kept[0] = n
        keeps[m] = torch.arange(n).unsqueeze(0) < kept.unsqueeze(1)
    keeps["image"][1] = False  # sample 1: no image patch kept
    keeps["image"][2] = torch.arange(9) < 4  # sample 2: a 2x2 grid (row 0 keeps the full 3x3)
    given = {}
    for m, keep in keeps.items():
        states = torch.randn(batch, lengths[m], 4, generator=generator)
        given[m] = (torch.where(keep.unsqueeze(-1), states, torch.full_like(states, 1e3)), keep)
    return given


@pytest.mark.parametrize("k", [1, 2, 7])
def test_graph_equals_the_naive_reference_and_is_deterministic(k):
    given = ragged()
    graph = build_graph(given, k=k)
    again = build_graph({m: (s.clone(), keep.clone()) for m, (s, keep) in given.items()}, k=k)
    assert edges(graph) == reference_edges(given, k, {"image": "grid"})
    assert torch.equal(graph.edge_index, again.edge_index) and torch.equal(graph.x, again.x)
    # node count = kept tokens; nodes in sample, modality, position order; padding never a node
    assert graph.num_nodes == sum(int(keep.sum()) for _, keep in given.values())
    expected = [
        (b, i, t)
        for b in range(5)
        for i, (_, keep) in enumerate(given.values())
        for t in range(keep.shape[1])
        if keep[b, t]
    ]
    columns = (graph.batch, graph.node_type, graph.position)
    got = list(zip(*(c.tolist() for c in columns), strict=True))
    assert got == expected
    assert graph.x.abs().max() < 100  # none of the 1e3 padding
    assert not (graph.edge_index[0] == graph.edge_index[1]).any()  # no self-loops
    assert graph.ptr.tolist() == [0, *torch.bincount(graph.batch, minlength=5).cumsum(0).tolist()]


def test_grid_edges_and_the_sequence_fallback_counted_by_formula():
    """A side x side grid has 2 * side * (side - 1) edges; 3 kept patches are a sequence (2)."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(3, 9, 4, generator=generator)
    keep = torch.arange(9).unsqueeze(0) < torch.tensor([[9], [4], [3]])
    graph = build_graph({"image": (image, keep)}, k=3)
    per_sample = torch.bincount(graph.batch[graph.edge_index[0]], minlength=3)
    assert per_sample.tolist() == [2 * (2 * 3 * 2), 2 * (2 * 2 * 1), 2 * 2]
    as_sequence = build_graph({"image": (image, keep)}, k=3, kinds={"image": "sequence"})
    per_sample = torch.bincount(as_sequence.batch[as_sequence.edge_index[0]], minlength=3)
    assert per_sample.tolist() == [2 * 8, 2 * 3, 2 * 2]


def test_a_missing_modality_gives_no_cross_edges():
    given = ragged()
    text = build_graph({"text": given["text"]}, k=4)
    source, target = text.edge_index
    assert (text.node_type[source] == text.node_type[target]).all()
    counts = given["text"][1].sum(1)
    assert text.edge_index.shape[1] == int(2 * (counts - 1).clamp_min(0).sum())
    full = build_graph(given, k=4)
    source, target = full.edge_index
    cross = full.batch[source][full.node_type[source] != full.node_type[target]]
    # sample 1 has no image: its cross edges join text and audio only
    types = full.node_type[source][(full.batch[source] == 1)]
    assert 1 not in types.tolist() and len(cross) > 0


def test_bad_graph_settings_are_clear_errors():
    given = inputs()
    with pytest.raises(ConfigError, match="kind of 'text' is 'tree'"):
        build_graph(given, kinds={"text": "tree"})
    with pytest.raises(ConfigError, match="no modality given"):
        build_graph({})
    with pytest.raises(ConfigError, match="has no parameter 'hops'; it takes width, layers, k"):
        build_fusion_head(PartConfig(name="graph", params={"hops": 2}), DIMS)
    with pytest.raises(ConfigError, match="gat or gcn, not 'sage'"):
        build_fusion_head(PartConfig(name="graph", params={"conv": "sage"}), DIMS)
    with pytest.raises(ConfigError, match="attention or mean, not 'max'"):
        GraphFusion(DIMS, readout="max")
    with pytest.raises(ConfigError, match="not divisible"):
        GraphFusion(DIMS, width=10, heads=4)


@pytest.mark.parametrize(("conv", "readout"), [("gat", "attention"), ("gcn", "mean")])
def test_padding_tokens_never_change_the_graph_head(conv, readout):
    torch.manual_seed(0)
    head = build_fusion_head(
        PartConfig(name="graph", params={"width": 16, "conv": conv, "readout": readout}), DIMS
    ).eval()
    given = inputs(lengths=(4, 4))
    with torch.no_grad():
        plain, used = head(given)
        with_padding, _ = head(padded(given))
    assert used == ["image", "text"] and plain.shape == (4, 16)
    torch.testing.assert_close(with_padding, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("conv", "readout"), [("gat", "attention"), ("gcn", "mean")])
def test_graph_fusion_learns_what_neither_modality_tells_alone(conv, readout):
    scores = xor_scores(lambda: GraphFusion(DIMS, width=32, conv=conv, readout=readout), steps=200)
    assert scores["both"] >= 0.85, scores
    assert scores["text"] <= 0.65, scores


def test_importing_the_fusion_modules_does_not_import_torch_geometric():
    code = (
        "import sys, jointspace.models, jointspace.models.fusion, jointspace.models.coattention, "
        "jointspace.models.fusion_graph, jointspace.models.graph_fusion; "
        "print('torch_geometric' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
