"""Retrieval in every direction, each over the rows having both sides (empty cell = absent)."""

from itertools import permutations
from pathlib import Path

import numpy as np
import pytest

from jointspace.config import ConfigError, EvalConfig
from jointspace.data.manifest import Manifest
from jointspace.evaluate import chance_retrieval, evaluate_model, evaluate_retrieval
from jointspace.evaluate.errors import EvaluationError
from jointspace.evaluate.metrics import chance_metrics
from jointspace.evaluate.retrieval import score_retrieval
from jointspace.models.embedding import distinct_items
from ranking_reference import naive_stats

KS = (1, 2, 5)
COLUMNS = ["text", "image", "audio", "label", "split"]


class TableModel:
    """A stand-in model: each distinct value has a fixed unit vector (by modality and name)."""

    def __init__(self, manifest: Manifest, modalities, dim: int = 6, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.modalities = list(modalities)
        self.table = {}
        for row in manifest.rows:
            # rows share a concept vector, so the model is better than chance but not perfect
            concept = rng.normal(size=dim)
            for m in modalities:
                if row[m] and (m, row[m]) not in self.table:
                    v = concept + 1.2 * rng.normal(size=dim)
                    self.table[m, row[m]] = v / np.linalg.norm(v)
        self.calls: list[tuple[str, int]] = []

    def encode(self, inputs, modality, *, batch_size=256, normalize=True, bucket=True):
        self.calls.append((modality, len(inputs)))
        names = [x if modality == "text" else Path(x).name for x in inputs]
        return np.stack([self.table[modality, name] for name in names])


def three_modality_manifest() -> Manifest:
    """14 rows: audio on some, one caption shared by two images, a row missing text, one with
    only audio, one with only an image."""
    rows = []
    for i in range(12):
        rows.append(
            {
                "text": f"caption {i % 10}" if i != 3 else "",
                "image": f"img{i}.png",
                "audio": f"snd{i}.wav" if i % 3 != 1 else "",
                "label": f"class{i % 4}",
                "split": "test",
            }
        )
    only = {"text": "", "image": "", "audio": "", "split": "test"}
    rows.append(only | {"audio": "lonely.wav", "label": "class0"})
    rows.append(only | {"image": "alone.png", "label": "class1"})
    return Manifest(Path("/data/tiny.csv"), rows, COLUMNS)


def naive_direction(model, manifest, a, b, relevance="pairs"):
    """Metrics of a → b over the rows having both, written out from the definitions."""
    rows = [r for r in manifest.rows if r[a] and r[b]]
    queries = list(dict.fromkeys(r[a] for r in rows))
    gallery = list(dict.fromkeys(r[b] for r in rows))
    relevant = np.zeros((len(queries), len(gallery)), dtype=bool)
    for r in rows:
        if relevance == "pairs":
            relevant[queries.index(r[a]), gallery.index(r[b])] = True
    if relevance == "label":
        labels_a = {q: {r["label"] for r in rows if r[a] == q} for q in queries}
        labels_b = {g: {r["label"] for r in rows if r[b] == g} for g in gallery}
        for i, q in enumerate(queries):
            for j, g in enumerate(gallery):
                relevant[i, j] = bool(labels_a[q] & labels_b[g])
    x = np.stack([model.table[a, q] for q in queries])
    y = np.stack([model.table[b, g] for g in gallery])
    has = relevant.any(axis=1)
    ranks, aps = naive_stats((x @ y.T)[has], relevant[has])
    out = {f"R@{k}": float(np.mean(ranks <= k)) for k in KS}
    out["mAP"] = float(np.mean(aps))
    out["median_rank"] = float(np.median(ranks))
    chance = chance_metrics(relevant, KS)
    return out | {f"chance_{k}": v for k, v in chance.items()}, int(has.sum())


@pytest.mark.parametrize("relevance", ["pairs", "label"])
def test_three_modalities_give_six_directions_each_over_rows_having_both(relevance):
    manifest = three_modality_manifest()
    modalities = ("text", "image", "audio")
    model = TableModel(manifest, modalities)
    m = evaluate_retrieval(model, manifest, modalities=modalities, relevance=relevance, ks=KS)
    directions = sorted({k.split("/")[0] for k in m if "/" in k})
    assert directions == sorted(f"{a}_to_{b}" for a, b in permutations(modalities, 2))
    recalls = []
    for a, b in permutations(modalities, 2):
        expected, queries = naive_direction(model, manifest, a, b, relevance)
        for key, value in expected.items():
            assert m[f"{a}_to_{b}/{key}"] == pytest.approx(value, abs=1e-6), (a, b, key)
        assert m[f"{a}_to_{b}/queries"] == queries
        recalls += [expected[f"R@{k}"] for k in KS]
    assert m["primary"] == pytest.approx(np.mean(recalls), abs=1e-6)
    assert m["mean_recall"] == m["primary"] and "skipped_pairs" not in m
    # each modality's distinct items are embedded once, however many pairs use them
    assert sorted(modality for modality, _ in model.calls) == sorted(modalities)
    # the audio side really is restricted: 8 rows have audio and text, not 13 with audio
    assert m["audio_to_text/queries"] == 7 and m["audio_to_image/queries"] == 8


def test_chance_is_reported_for_every_direction_over_rows_having_both():
    manifest = three_modality_manifest()
    modalities = ("text", "image", "audio")
    chance = chance_retrieval(manifest, modalities=modalities, ks=KS)
    model = TableModel(manifest, modalities)
    for a, b in permutations(modalities, 2):
        expected, _ = naive_direction(model, manifest, a, b)
        for k in KS:
            assert chance[f"{a}_to_{b}/R@{k}"] == pytest.approx(expected[f"chance_R@{k}"])
    assert len({k.split("/")[0] for k in chance}) == 6


def test_two_modalities_are_unchanged():
    """Same keys in the same order and the same numbers as scoring the full matrix directly."""
    manifest = three_modality_manifest()
    rows = [r for r in manifest.rows if r["text"] and r["image"]]
    two = Manifest(manifest.path, rows, ["text", "image", "label", "split"])
    model = TableModel(two, ("text", "image"))
    m = evaluate_retrieval(model, two, ks=KS)
    texts = list(dict.fromkeys(r["text"] for r in rows))
    images = list(dict.fromkeys(r["image"] for r in rows))
    relevant = np.zeros((len(texts), len(images)), dtype=bool)
    for r in rows:
        relevant[texts.index(r["text"]), images.index(r["image"])] = True
    x = np.stack([model.table["text", t] for t in texts])
    y = np.stack([model.table["image", i] for i in images])
    expected = score_retrieval(x @ y.T, relevant, ("text", "image"), KS, "pairs")
    assert list(m) == list(expected)
    assert m == pytest.approx(expected)
    assert next(iter(m)) == "text_to_image/R@1"


def test_a_pair_no_row_has_is_skipped_counted_and_named(caplog):
    manifest = three_modality_manifest()
    for row in manifest.rows:  # audio only where there is no text
        if row["text"]:
            row["audio"] = ""
    modalities = ("text", "image", "audio")
    model = TableModel(manifest, modalities)
    m = evaluate_retrieval(model, manifest, modalities=modalities, ks=KS)
    assert m["skipped_pairs"] == 1 and m["skipped"] == "text–audio"
    assert sorted({k.split("/")[0] for k in m if "/" in k}) == sorted(
        ["text_to_image", "image_to_text", "image_to_audio", "audio_to_image"]
    )
    assert "text–audio" in caplog.text
    chance = chance_retrieval(manifest, modalities=modalities, ks=KS)
    assert not any(k.startswith(("text_to_audio", "audio_to_text")) for k in chance)


def test_no_pair_with_rows_is_an_error_naming_the_pairs():
    rows = [
        {"text": "a dog", "image": "", "audio": "", "label": "x", "split": "test"},
        {"text": "", "image": "cat.png", "audio": "", "label": "x", "split": "test"},
        {"text": "", "image": "", "audio": "moo.wav", "label": "x", "split": "test"},
    ]
    manifest = Manifest(Path("/data/apart.csv"), rows, COLUMNS)
    model = TableModel(manifest, ("text", "image", "audio"))
    with pytest.raises(EvaluationError, match=r"apart\.csv.*text–image, text–audio, image–audio"):
        evaluate_retrieval(model, manifest, modalities=("text", "image", "audio"))
    with pytest.raises(EvaluationError, match=r"apart\.csv"):
        chance_retrieval(manifest, modalities=("text", "image", "audio"))


def test_evaluate_model_takes_every_modality_of_the_model_and_refuses_one():
    manifest = three_modality_manifest()
    model = TableModel(manifest, ("text", "image", "audio"))
    m = evaluate_model(model, manifest, EvalConfig(ks=[1, 5]))
    assert len({k.split("/")[0] for k in m if "/" in k}) == 6
    model.modalities = ["text"]
    with pytest.raises(ConfigError, match="at least two modalities"):
        evaluate_model(model, manifest)


def test_distinct_items_leave_out_absent_cells():
    manifest = three_modality_manifest()
    values, rows = distinct_items(manifest, "audio")
    assert "" not in values and len(values) == 9
    assert all(row["audio"] == value for value, row in zip(values, rows, strict=True))


def test_the_metrics_table_names_a_skipped_pair():
    from jointspace.report.markdown import relevance_note

    note = relevance_note({"relevance": "pairs", "skipped_pairs": 1, "skipped": "text–audio"})
    assert "not evaluated (no row has both): text–audio" in note
