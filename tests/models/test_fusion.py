"""Fusion heads: padding never matters, a missing modality still answers, both modalities help."""

import pytest
import torch
import torch.nn.functional as F

from jointspace.config import ConfigError, PartConfig
from jointspace.models.fusion import (
    AttentionFusion,
    ConcatFusion,
    FusionClassifier,
    GatedFusion,
    build_fusion_head,
)

HEADS = {"concat": ConcatFusion, "gated": GatedFusion, "attention": AttentionFusion}
DIMS = {"text": 6, "image": 5}


def inputs(batch=4, lengths=(3, 2), seed=0):
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for (m, d), n in zip(DIMS.items(), lengths, strict=True):
        states = torch.randn(batch, n, d, generator=generator)
        out[m] = (states, torch.ones(batch, n, dtype=torch.bool))
    return out


def padded(given, extra=3):
    """The same inputs with ``extra`` padding positions of garbage after each modality's tokens."""
    out = {}
    for m, (states, keep) in given.items():
        junk = torch.full((states.shape[0], extra, states.shape[2]), 1e3)
        out[m] = (torch.cat([states, junk], 1), F.pad(keep, (0, extra), value=False))
    return out


@pytest.mark.parametrize("name", HEADS)
def test_padding_tokens_never_change_the_output(name):
    torch.manual_seed(0)
    head = HEADS[name](DIMS, width=16).eval()
    given = inputs()
    with torch.no_grad():
        plain, used = head(given)
        with_padding, _ = head(padded(given))
    assert used == ["image", "text"] and plain.shape == (4, 16)
    torch.testing.assert_close(with_padding, plain, atol=1e-5, rtol=1e-5)


# Every registered head, as build_fusion_head makes it from a config.
ALL_HEADS = {
    **{name: PartConfig(name) for name in HEADS},
    "attention-two": PartConfig("attention", {"stream": "two"}),
    "graph": PartConfig("graph"),
}


@pytest.mark.parametrize("name", ALL_HEADS)
def test_a_missing_modality_still_predicts_and_is_reported(name):
    torch.manual_seed(0)
    config = ALL_HEADS[name]
    head = build_fusion_head(PartConfig(config.name, {**config.params, "width": 16}), DIMS)
    model = FusionClassifier(head, classes=3).eval()
    both = inputs()
    with torch.no_grad():
        full, used_full = model(both)
        text_only, used = model({"text": both["text"]})
        image_only, used_image = model({"image": both["image"]})
    assert used_full == ["image", "text"] and used == ["text"] and used_image == ["image"]
    assert text_only.shape == (4, 3) and torch.isfinite(text_only).all()
    assert torch.isfinite(image_only).all()
    assert not torch.allclose(text_only, full)  # the image did count when it was there


def test_gate_weights_are_a_distribution_over_the_modalities_given():
    torch.manual_seed(0)
    head = GatedFusion(DIMS, width=8)
    weights, _ = head.weights(inputs())
    assert weights.shape == (4, 2)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4))
    alone, _ = head.weights({"image": inputs()["image"]})
    torch.testing.assert_close(alone, torch.ones(4, 1))


def test_unknown_or_no_modality_is_a_clear_error():
    head = ConcatFusion(DIMS, width=8)
    with pytest.raises(ConfigError, match="unknown modality 'audio'"):
        head({"audio": inputs()["text"]})
    with pytest.raises(ConfigError, match="no modality given"):
        head({})
    with pytest.raises(ConfigError, match="not divisible"):
        AttentionFusion(DIMS, width=10, heads=4)


def xor_scores(make_head, steps=300, n=512):
    """Test accuracy of ``FusionClassifier(make_head())`` trained on both modalities and on text
    alone, where the label is the XOR of the signs of one text and one image feature."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    text, image = (
        torch.randn(n, 1, 6, generator=generator),
        torch.randn(n, 1, 5, generator=generator),
    )
    labels = ((text[:, 0, 0] > 0) ^ (image[:, 0, 0] > 0)).long()
    keep = torch.ones(n, 1, dtype=torch.bool)
    data = {"text": (text, keep), "image": (image, keep)}

    def accuracy(model, given, rows):
        with torch.no_grad():
            logits, _ = model({m: (s[rows], k[rows]) for m, (s, k) in given.items()})
        return (logits.argmax(-1) == labels[rows]).float().mean().item()

    train, test = torch.arange(0, 3 * n // 4), torch.arange(3 * n // 4, n)
    scores = {}
    for given in ("both", "text"):
        chosen = data if given == "both" else {"text": data["text"]}
        model = FusionClassifier(make_head(), classes=2)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(steps):
            logits, _ = model({m: (s[train], k[train]) for m, (s, k) in chosen.items()})
            loss = F.cross_entropy(logits, labels[train])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scores[given] = accuracy(model.eval(), chosen, test)
    return scores


@pytest.mark.parametrize("name", HEADS)
def test_fusion_learns_what_neither_modality_tells_alone(name):
    """Label = XOR of the signs of one text and one image feature: each alone is at chance."""
    scores = xor_scores(lambda: HEADS[name](DIMS, width=32))
    assert scores["both"] >= 0.85, scores
    assert scores["text"] <= 0.65, scores  # one modality alone: about chance (0.5)
