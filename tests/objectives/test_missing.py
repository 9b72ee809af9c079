"""Absent modalities: each pair is scored over the rows holding both, against written-out loops."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from jointspace.config import ConfigError, ObjectiveConfig
from jointspace.objectives import ClipObjective, SigLipObjective, TripletObjective
from jointspace.objectives.cca import DeepCCAObjective
from jointspace.objectives.combined import build_objective

MODALITIES = ("audio", "image", "text")
N, D = 14, 8
SCALE, BIAS = 1 / 0.07, -3.0


@pytest.fixture
def batch():
    """Embeddings of 3 modalities, random absent cells (every row keeps one), duplicate values."""
    g = torch.Generator().manual_seed(7)
    embeddings = {m: F.normalize(torch.randn(N, D, generator=g), dim=-1) for m in MODALITIES}
    present = {m: torch.rand(N, generator=g) < 0.6 for m in MODALITIES}
    present["image"][[0, 1]] = False  # rows 0 and 1 hold text alone, row 2 audio alone
    present["audio"][[0, 1]] = False
    present["text"][[0, 1]] = True
    present["text"][2], present["image"][2], present["audio"][2] = False, False, True
    for i in range(N):  # every row keeps at least one modality
        if not any(present[m][i] for m in MODALITIES):
            present["image"][i] = True
    groups = {m: torch.arange(N) for m in MODALITIES}
    groups["image"][5] = groups["image"][4] = 100  # a shared image, a duplicate caption
    groups["text"][9] = groups["text"][3] = 200
    for m in MODALITIES:  # the collate's ids for absent cells: unique to the row
        groups[m] = torch.where(present[m], groups[m], -1 - torch.arange(N))
    return embeddings, present, groups


def positives_of(groups, rows):
    ids = {m: g[rows].tolist() for m, g in groups.items()}
    n = int(rows.sum())
    return [[i == j or any(v[i] == v[j] for v in ids.values()) for j in range(n)] for i in range(n)]


def naive_clip(a, b, pos):
    n = len(a)

    def direction(x, y, p):
        total = 0.0
        for i in range(n):
            logits = [SCALE * float(x[i] @ y[j]) for j in range(n)]
            kept = [logits[j] for j in range(n) if j == i or not p(i, j)]
            total += math.log(sum(math.exp(v) for v in kept)) - logits[i]
        return total / n

    return (direction(a, b, lambda i, j: pos[i][j]) + direction(b, a, lambda i, j: pos[j][i])) / 2


def naive_siglip(a, b, pos):
    n, total = len(a), 0.0
    for i, j in itertools.product(range(n), range(n)):
        z = 1.0 if pos[i][j] else -1.0
        total += math.log1p(math.exp(-z * (SCALE * float(a[i] @ b[j]) + BIAS)))
    return total / n


def naive_triplet(a, b, pos, margin=0.2):
    n, total = len(a), 0.0
    for i, k in itertools.product(range(n), range(n)):
        if not pos[i][k]:
            total += max(0.0, margin - float(a[i] @ b[i]) + float(a[i] @ b[k]))
            total += max(0.0, margin - float(b[i] @ a[i]) + float(b[i] @ a[k]))
    return total / n


NAIVE = {"clip": naive_clip, "siglip": naive_siglip, "triplet": naive_triplet}
OBJECTIVES = {
    "clip": lambda **kw: ClipObjective(**kw),
    "clip_tiled": lambda **kw: ClipObjective(block=4, **kw),
    "siglip": lambda **kw: SigLipObjective(**kw),
    "siglip_tiled": lambda **kw: SigLipObjective(block=4, **kw),
    "triplet": lambda **kw: TripletObjective(**kw),
}


def expected(kind, embeddings, present, groups, pairs):
    losses = []
    for x, y in pairs:
        rows = present[x] & present[y]
        if rows.any():
            a, b = embeddings[x][rows].double(), embeddings[y][rows].double()
            losses.append(NAIVE[kind](a, b, positives_of(groups, rows)))
    return sum(losses) / len(losses)


def run(objective, embeddings, groups, present=None):
    scale, bias = torch.tensor(math.log(SCALE)), torch.tensor(BIAS)
    out = objective(embeddings, logit_scale=scale, logit_bias=bias, groups=groups, present=present)
    return next(v for k, v in out.items() if k.endswith("_loss"))


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_random_missing_cells_give_exactly_the_loss_of_the_pairs_present(batch, name):
    embeddings, present, groups = batch
    kind = name.removesuffix("_tiled")
    pairs = list(itertools.combinations(MODALITIES, 2))
    got = run(OBJECTIVES[name](), embeddings, groups, present)
    assert float(got) == pytest.approx(expected(kind, embeddings, present, groups, pairs), abs=1e-5)
    # Scoring every row (fillers included) would give another number.
    every = {m: torch.ones(N, dtype=torch.bool) for m in MODALITIES}
    assert abs(float(got) - expected(kind, embeddings, every, groups, pairs)) > 1e-3


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_all_present_is_todays_loss_bit_for_bit(batch, name):
    embeddings, _, groups = batch
    every = {m: torch.ones(N, dtype=torch.bool) for m in MODALITIES}
    objective = OBJECTIVES[name]()
    assert torch.equal(
        run(objective, embeddings, groups, every), run(objective, embeddings, groups)
    )


@pytest.mark.parametrize("name", ["clip", "siglip", "triplet"])
def test_anchor_scores_only_the_anchor_pairs(batch, name):
    embeddings, present, groups = batch
    got = run(OBJECTIVES[name](anchor="image"), embeddings, groups, present)
    anchored = [("audio", "image"), ("image", "text")]
    assert float(got) == pytest.approx(
        expected(name, embeddings, present, groups, anchored), abs=1e-5
    )
    everything = run(OBJECTIVES[name](), embeddings, groups, present)
    assert abs(float(got) - float(everything)) > 1e-4


def test_an_unknown_anchor_is_a_config_error_naming_it(batch):
    embeddings, present, groups = batch
    objective = build_objective([ObjectiveConfig("clip", {"anchor": "video"})])
    with pytest.raises(ConfigError, match=r"clip anchor 'video' is not a modality.*audio, image"):
        run(objective, embeddings, groups, present)
    with pytest.raises(ConfigError, match="anchor must be a modality name"):
        ClipObjective(anchor=3)


def test_a_pair_without_rows_is_skipped_and_a_modality_no_row_holds_may_be_left_out(batch):
    embeddings, present, groups = batch
    present = {m: p.clone() for m, p in present.items()}
    present["audio"] = ~present["text"]  # audio and text never meet
    present["image"] |= ~(present["audio"] | present["text"])
    pairs = [("audio", "image"), ("image", "text")]
    got = run(ClipObjective(), embeddings, groups, present)
    assert float(got) == pytest.approx(
        expected("clip", embeddings, present, groups, pairs), abs=1e-5
    )
    # A modality no row holds: left out of the embeddings, the other pair alone counts.
    present["audio"] = torch.zeros(N, dtype=torch.bool)
    partial = {m: e for m, e in embeddings.items() if m != "audio"}
    got = run(ClipObjective(), partial, groups, present)
    want = expected("clip", embeddings, present, groups, [("image", "text")])
    assert float(got) == pytest.approx(want, abs=1e-5)


def test_no_pair_with_a_row_gives_a_zero_that_still_backpropagates():
    embeddings = {m: torch.randn(4, D, requires_grad=True) for m in ("image", "text")}
    present = {
        "image": torch.tensor([1, 1, 0, 0]).bool(),
        "text": torch.tensor([0, 0, 1, 1]).bool(),
    }
    loss = run(ClipObjective(), embeddings, None, present)
    assert loss.item() == 0.0
    loss.backward()
    assert all(float(e.grad.abs().sum()) == 0.0 for e in embeddings.values())


def test_combined_objectives_pass_presence_to_every_part(batch):
    embeddings, present, groups = batch
    pairs = list(itertools.combinations(MODALITIES, 2))
    combined = build_objective(
        [ObjectiveConfig("clip", weight=0.5), ObjectiveConfig("triplet", weight=2.0)]
    )
    scale, bias = torch.tensor(math.log(SCALE)), torch.tensor(BIAS)
    out = combined(embeddings, logit_scale=scale, logit_bias=bias, groups=groups, present=present)
    clip = expected("clip", embeddings, present, groups, pairs)
    triplet = expected("triplet", embeddings, present, groups, pairs)
    assert float(out["clip_loss"]) == pytest.approx(clip, abs=1e-5)
    assert float(out["loss"]) == pytest.approx(0.5 * clip + 2.0 * triplet, abs=1e-5)


def test_deep_cca_skips_a_pair_with_fewer_than_two_rows():
    g = torch.Generator().manual_seed(0)
    embeddings = {m: torch.randn(6, 3, generator=g) for m in ("image", "text")}
    present = {"image": torch.tensor([1, 0, 0, 0, 0, 0]).bool(), "text": torch.ones(6).bool()}
    loss = run(DeepCCAObjective(), embeddings, None, present)
    assert float(loss) == 0.0  # one row: no correlation to maximise, and no error
