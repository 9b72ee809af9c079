import math

import pytest
import torch
import torch.nn.functional as F

from jointspace.objectives import ClipObjective, clip_loss, positive_pairs
from jointspace.objectives.contrastive import MAX_LOGIT_SCALE
from jointspace.registry import build


def naive_clip_loss(a, b, scale, positives=None):
    """Per-row loops over the written-out InfoNCE formula, in float64."""
    a, b = a.double(), b.double()
    n = len(a)
    positives = torch.eye(n, dtype=torch.bool) if positives is None else positives

    def direction(x, y, pos):
        total = 0.0
        for i in range(n):
            logits = [scale * float(x[i] @ y[j]) for j in range(n)]
            kept = [logits[j] for j in range(n) if j == i or not pos[i, j]]
            total += -(logits[i] - math.log(sum(math.exp(v) for v in kept)))
        return total / n

    return (direction(a, b, positives) + direction(b, a, positives.T)) / 2


@pytest.fixture
def embeddings():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(12, 16, generator=g), dim=-1)
    b = F.normalize(torch.randn(12, 16, generator=g), dim=-1)
    return a, b


def test_clip_loss_matches_naive_reference(embeddings):
    a, b = embeddings
    logit_scale = torch.tensor(math.log(1 / 0.07))
    expected = naive_clip_loss(a, b, 1 / 0.07)
    assert clip_loss(a, b, logit_scale).item() == pytest.approx(expected, abs=1e-5)


def test_clip_loss_masks_shared_images_and_duplicate_captions(embeddings):
    a, b = embeddings
    # rows 0-2 share an image (COCO-style captions); rows 5 and 9 carry an identical caption.
    image_ids = torch.tensor([0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    text_ids = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 5, 10, 11])
    positives = positive_pairs({"image": image_ids, "text": text_ids})
    assert positives[0, 2] and positives[5, 9] and not positives[3, 4]
    logit_scale = torch.tensor(math.log(1 / 0.05))
    expected = naive_clip_loss(a, b, 1 / 0.05, positives)
    got = clip_loss(a, b, logit_scale, positives)
    assert got.item() == pytest.approx(expected, abs=1e-5)
    # and masking really changes the value compared with ignoring the duplicates
    assert abs(got.item() - naive_clip_loss(a, b, 1 / 0.05)) > 1e-3


def test_duplicate_rows_are_not_pushed_apart():
    # Two identical pairs: without masking each is the other's hardest negative.
    a = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=-1)
    scale = torch.tensor(math.log(100.0))
    positives = positive_pairs({"text": torch.tensor([0, 0, 1])})
    assert clip_loss(a, a, scale, positives).item() < 1e-6
    # unmasked, each duplicate splits its probability with its twin: loss = 2·ln2 / 3
    assert clip_loss(a, a, scale).item() == pytest.approx(2 * math.log(2) / 3, abs=1e-5)


def test_temperature_is_learnable_and_clamped(embeddings):
    a, b = embeddings
    logit_scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    clip_loss(a, b, logit_scale).backward()
    assert logit_scale.grad is not None and logit_scale.grad.abs() > 0
    too_big = clip_loss(a, b, torch.tensor(10.0))
    at_max = clip_loss(a, b, torch.tensor(MAX_LOGIT_SCALE))
    assert too_big.item() == pytest.approx(at_max.item(), abs=1e-6)


def test_objective_module_averages_modality_pairs(embeddings):
    a, b = embeddings
    c = F.normalize(a + b, dim=-1)
    scale = torch.tensor(2.0)
    objective = build("objective", "clip")
    assert isinstance(objective, ClipObjective)
    out = objective({"text": a, "image": b, "audio": c}, logit_scale=scale)
    pairs = [clip_loss(c, b, scale), clip_loss(c, a, scale), clip_loss(b, a, scale)]
    assert out["clip_loss"].item() == pytest.approx(sum(p.item() for p in pairs) / 3, abs=1e-6)


def test_clip_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        clip_loss(torch.zeros(3, 4), torch.zeros(2, 4), torch.tensor(1.0))


def test_unknown_objective_lists_known_names():
    with pytest.raises(KeyError, match="known objectives: clip"):
        build("objective", "nope")
