"""fit_classifier: both modalities beat either alone on an XOR; dropout; best epoch; seeds."""

import pytest
import torch

from classify_helpers import write_xor_manifest, xor_config
from jointspace.classifier.data import labelled_sets
from jointspace.classifier.fit import (
    _by_pattern,
    dropout_patterns,
    fit_classifier,
    predict_labels,
    predict_proba,
)
from jointspace.runs.classify import load_towers


@pytest.fixture(scope="module")
def xor_sets(tmp_path_factory):
    """Token states of the XOR manifest's splits under tiny random frozen towers."""
    manifest = write_xor_manifest(tmp_path_factory.mktemp("fit"))
    config = xor_config(manifest)
    towers = load_towers(config)
    sets = {"tokens": labelled_sets(config, towers)}
    config.towers.inputs = "pooled"
    return manifest, sets | {"pooled": labelled_sets(config, towers)}


def accuracy(model, data, drop=None):
    return float((predict_labels(model, data, drop=drop) == data.labels).float().mean())


@pytest.mark.parametrize(
    ("head", "inputs"), [("concat", "tokens"), ("gated", "tokens"), ("attention", "pooled")]
)
def test_fusion_is_far_above_either_modality_alone(xor_sets, head, inputs):
    """label = (image is red) XOR (text says hot): one modality alone cannot beat chance.

    (Attention runs on pooled inputs here only to keep the test fast.)
    """
    manifest, found = xor_sets
    sets = found[inputs]
    scores = {}
    for given in (["text", "image"], ["text"], ["image"]):
        config = xor_config(manifest, head, given, epochs=40 if head == "gated" else 20)
        drop = {m for m in ("text", "image") if m not in given}
        train, val, test = (_only(sets[s], drop) for s in ("train", "val", "test"))
        fit = fit_classifier(train, config, val=val)
        scores["+".join(given)] = accuracy(fit.model, test)
    # measured: both 0.97-1.0; text alone 0.57-0.58, image alone 0.52 (60 test rows)
    assert scores["text+image"] >= 0.9, scores
    assert scores["text"] <= 0.65 and scores["image"] <= 0.65, scores
    assert scores["text+image"] - max(scores["text"], scores["image"]) >= 0.3, scores


def _only(data, drop):
    """``data`` without the modalities in ``drop`` (a single-modality classifier's view)."""
    from dataclasses import replace

    keep = {m: v for m, v in data.tokens.items() if m not in drop}
    return replace(data, tokens=keep, index={m: data.index[m] for m in keep})


def test_dropout_patterns_drop_at_the_rate_asked_but_never_everything():
    generator = torch.Generator().manual_seed(0)
    p, n = 0.4, 20_000
    dropped = dropout_patterns(n, ["image", "text"], p, generator)
    assert not dropped.all(dim=1).any()
    # each dropped alone with p(1-p), both drawn (p²) → one of the two kept: p - p²/2 each
    rate = dropped.float().mean(dim=0)
    torch.testing.assert_close(rate, torch.full((2,), p - p * p / 2), atol=0.01, rtol=0)
    assert float((~dropped).all(dim=1).float().mean()) == pytest.approx((1 - p) ** 2, abs=0.01)
    always = dropout_patterns(1000, ["a", "b", "c"], 1.0, generator)
    assert (always.sum(dim=1) == 2).all()  # p = 1: exactly one modality left per row
    groups = _by_pattern(dropped[:50], ["image", "text"])
    assert sorted(i for rows in groups.values() for i in rows.tolist()) == list(range(50))
    for drop, rows in groups.items():
        for i in rows.tolist():
            assert {
                m for m, d in zip(["image", "text"], dropped[i].tolist(), strict=True) if d
            } == drop


def test_modality_dropout_teaches_the_classifier_to_answer_from_one(tmp_path):
    """Here each modality alone gives the label; without dropout the image is never needed."""

    def redundant(rows):  # the word says the colour: label = colour, readable from either
        for r in rows:
            red = r["meta_kind"] == "red"
            r["text"] = r["text"].replace("hot", "x").replace("cold", "x")
            r["text"] = r["text"].replace("x", "warm" if red else "chilly")
            r["label"] = r["meta_kind"]
        return rows

    manifest = write_xor_manifest(tmp_path, rows=redundant)
    config = xor_config(manifest, "concat", epochs=15)
    sets = labelled_sets(config, load_towers(config))
    scores = {}
    for p in (0.0, 0.5):
        config.train.modality_dropout = p
        fit = fit_classifier(sets["train"], config, val=sets["val"])
        scores[p] = {
            missing: accuracy(fit.model, sets["test"], {missing}) for missing in ("text", "image")
        }
    assert min(scores[0.5].values()) >= 0.95, scores  # either modality alone answers
    assert sum(scores[0.5].values()) >= sum(scores[0.0].values()), scores


def test_the_best_validation_epoch_is_kept_and_runs_are_seeded(xor_sets):
    manifest, found = xor_sets
    sets = found["tokens"]
    config = xor_config(manifest, "concat", epochs=8)
    first = fit_classifier(sets["train"], config, val=sets["val"])
    assert len(first.evals) == 8 and first.best_epoch == 1 + first.evals.index(max(first.evals))
    assert accuracy(first.model, sets["val"]) == pytest.approx(max(first.evals))
    assert len(first.history) == 8 * 8  # 240 rows: 8 batches of up to 32 per epoch
    again = fit_classifier(sets["train"], config, val=sets["val"])
    assert again.evals == first.evals
    torch.testing.assert_close(
        predict_proba(again.model, sets["test"]), predict_proba(first.model, sets["test"])
    )
    config.train.seed = 1
    other = fit_classifier(sets["train"], config, val=sets["val"])
    assert other.history[0]["loss"] != first.history[0]["loss"]
    alone = fit_classifier(sets["train"], config)  # no validation: the last epoch, no evals
    assert alone.evals == [] and alone.best_epoch is None
    probs = predict_proba(first.model, sets["test"])
    assert probs.shape == (60, 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(60))
