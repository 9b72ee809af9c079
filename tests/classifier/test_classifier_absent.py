"""Absent cells in a classifier's manifest: such rows train and are classified without them."""

import torch

from classify_helpers import write_xor_manifest, xor_config
from jointspace.classifier.data import labelled_sets
from jointspace.classifier.fit import fit_classifier, predict_proba
from jointspace.runs.classify import load_towers


def _redundant(holes: bool):
    """label = the colour, readable from the image or the word; ``holes`` empties some cells."""

    def edit(rows):
        for n, r in enumerate(rows):
            red = r["meta_kind"] == "red"
            r["text"] = r["text"].replace("hot", "x").replace("cold", "x")
            r["text"] = r["text"].replace("x", "warm" if red else "chilly")
            r["label"] = r["meta_kind"]
            if holes and n % 5 == 1:
                r["image"] = ""
            if holes and n % 5 == 3:
                r["text"] = ""
        return rows

    return edit


def test_absent_cells_are_never_encoded_and_rows_go_without_them(tmp_path, monkeypatch):
    whole = write_xor_manifest(tmp_path / "whole", rows=_redundant(False))
    holed = write_xor_manifest(tmp_path / "holed", rows=_redundant(True))
    config = xor_config(holed, "concat", epochs=6)
    towers = load_towers(config)
    seen = []
    real = towers.encode_tokens
    monkeypatch.setattr(
        towers, "encode_tokens", lambda xs, m, **k: seen.append((m, list(xs))) or real(xs, m, **k)
    )
    sets = labelled_sets(config, towers)
    texts, images = dict(seen)["text"], dict(seen)["image"]
    full = labelled_sets(xor_config(whole, "concat"), towers)
    assert "" not in texts and all(p.is_file() for p in images)
    assert len(images) == 360 - 72 and len(texts) <= 360 - 72
    test = sets["test"]
    n = torch.arange(300, 360)
    assert test.present["image"].tolist() == (n % 5 != 1).tolist()
    assert test.present["text"].tolist() == (n % 5 != 3).tolist()

    fit = fit_classifier(sets["train"], config, val=sets["val"])
    got = predict_proba(fit.model, test)
    # a row without its image is scored as the complete row with the image left out, etc.
    expected = predict_proba(fit.model, full["test"])
    expected[n % 5 == 1] = predict_proba(fit.model, full["test"], drop={"image"})[n % 5 == 1]
    expected[n % 5 == 3] = predict_proba(fit.model, full["test"], drop={"text"})[n % 5 == 3]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    accuracy = float((got.argmax(dim=-1) == test.labels).float().mean())
    assert accuracy >= 0.9


def test_modality_dropout_with_absent_cells_never_leaves_a_row_empty(tmp_path):
    holed = write_xor_manifest(tmp_path, rows=_redundant(True))
    config = xor_config(holed, "concat", epochs=2, modality_dropout=1.0)
    sets = labelled_sets(config, load_towers(config))
    fit = fit_classifier(sets["train"], config)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in fit.history)
