"""classify → run directory → Classifier.open → predict: the same answers as in process."""

import csv
import json

import pytest
import torch

from classify_helpers import write_xor_manifest, xor_config
from jointspace.classifier.data import labelled_sets
from jointspace.classifier.fit import fit_classifier, predict_proba
from jointspace.errors import ArtifactError, InputError, NotFoundError
from jointspace.runs.classify import Classifier, classify, load_towers
from jointspace.runs.outputs import MARKER, OutputExistsError


@pytest.fixture(scope="module")
def xor_manifest(tmp_path_factory):
    return write_xor_manifest(tmp_path_factory.mktemp("xor"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, xor_manifest):
    """A concat classifier trained by ``classify`` into a run directory, and its metrics."""
    out = tmp_path_factory.mktemp("runs") / "concat"
    config = xor_config(xor_manifest, "concat", epochs=25)
    return config, out, classify(config, out)


def rows_of(manifest, split):
    with manifest.open() as handle:
        return [r for r in csv.DictReader(handle) if r["split"] == split]


def test_the_run_directory_holds_every_file(trained):
    _, out, metrics = trained
    names = {p.name for p in out.iterdir()}
    assert names == {
        MARKER,
        "config.yaml",
        "towers",
        "classifier.json",
        "classifier.safetensors",
        "metrics.json",
        "predictions.csv",
        "report.html",
    }
    assert json.loads((out / "metrics.json").read_text()) == metrics
    meta = json.loads((out / "classifier.json").read_text())
    assert meta["classes"] == ["no", "yes"] and meta["modalities"] == ["image", "text"]
    assert meta["head"] == {"name": "concat", "params": {"width": 32}}
    assert meta["inputs"] == "tokens" and meta["format_version"] == 1
    assert set(meta["token_dims"]) == {"image", "text"}
    page = (out / "report.html").read_text()
    assert "concat fusion classifier on" in page and "macro-F1" in page
    assert f"{metrics['test']['accuracy']:.3f}"[:4] in page


def test_towers_from_a_saved_model_make_a_self_contained_run(trained, tmp_path, xor_manifest):
    import shutil

    from jointspace.models.io import save_model

    config, out, _ = trained
    source = tmp_path / "towers-run"
    save_model(load_towers(config), source / "model")
    changed = copy_config(config)
    changed.towers.model, changed.towers.run = None, str(source)
    classify(changed, tmp_path / "run")
    shutil.rmtree(source)  # the classifier keeps its own copy of the towers
    row = rows_of(xor_manifest, "test")[0]
    inputs = {"text": row["text"], "image": xor_manifest.parent / row["image"]}
    found = Classifier.open(tmp_path / "run").probabilities(inputs)[0]
    torch.testing.assert_close(
        found, Classifier.open(out).probabilities(inputs)[0], atol=1e-6, rtol=0
    )


def copy_config(config):
    import copy

    return copy.deepcopy(config)


def test_open_predict_equals_in_process_probabilities(trained, xor_manifest):
    config, out, _ = trained
    # The same config and seed in process: towers, sets and head come out identical.
    model = load_towers(config)
    sets = labelled_sets(config, model)
    fit = fit_classifier(sets["train"], config, val=sets["val"])
    expected = predict_proba(fit.model, sets["test"])
    classifier = Classifier.open(out)
    assert classifier.modalities == ["image", "text"] and classifier.classes == ["no", "yes"]
    assert len(classifier.fingerprint) == 16
    rows = rows_of(xor_manifest, "test")
    assert [r["id"] for r in rows] == sets["test"].ids
    for i, row in enumerate(rows[:12]):
        image = xor_manifest.parent / row["image"]
        probs, used = classifier.probabilities({"text": row["text"], "image": image})
        assert used == ["image", "text"]
        torch.testing.assert_close(probs, expected[i], atol=1e-6, rtol=0)
        answer = classifier.predict({"text": row["text"], "image": str(image)}, top_k=1)
        assert answer.label == classifier.classes[int(expected[i].argmax())]
        assert len(answer.scores) == 1 and answer.scores[0][1] == pytest.approx(float(probs.max()))


def test_predictions_csv_matches_the_classifier_and_metrics(trained, xor_manifest):
    _, out, metrics = trained
    with (out / "predictions.csv").open() as handle:
        saved = list(csv.DictReader(handle))
    rows = {r["id"]: r for r in rows_of(xor_manifest, "test")}
    assert [r["id"] for r in saved] == list(rows)
    classifier = Classifier.open(out)
    for row in saved[:10]:
        source = rows[row["id"]]
        image = xor_manifest.parent / source["image"]
        answer = classifier.predict({"text": source["text"], "image": image})
        assert answer.label == row["predicted"] and row["label"] == source["label"]
        assert row["group"] == source["meta_kind"]
    correct = [int(r["correct"]) for r in saved]
    assert correct == [int(r["label"] == r["predicted"]) for r in saved]
    assert metrics["test"]["accuracy"] == pytest.approx(sum(correct) / len(correct), abs=1e-12)
    for group in ("red", "blue"):
        chosen = [c for c, r in zip(correct, saved, strict=True) if r["group"] == group]
        found = metrics["test"]["per_group"][group]
        assert found["rows"] == len(chosen)
        assert found["accuracy"] == pytest.approx(sum(chosen) / len(chosen), abs=1e-12)


def test_a_missing_modality_still_answers_and_says_what_it_used(trained, xor_manifest):
    _, out, _ = trained
    classifier = Classifier.open(out)
    row = rows_of(xor_manifest, "test")[0]
    text_only = classifier.predict({"text": row["text"], "image": None}, top_k=5)
    assert text_only.used == ["text"] and len(text_only.scores) == 2
    assert sum(p for _, p in text_only.scores) == pytest.approx(1.0, abs=1e-6)
    assert text_only.scores[0][1] >= text_only.scores[1][1]
    image_only = classifier.predict({"image": xor_manifest.parent / row["image"]})
    assert image_only.used == ["image"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"audio": "x.wav"}, "takes image, text; it has no 'audio' input"),
        ({}, "give at least one of image, text"),
        ({"text": None}, "give at least one of image, text"),
        ({"text": "  "}, "text is empty"),
    ],
)
def test_bad_predict_inputs_are_clear_errors(trained, inputs, message):
    classifier = Classifier.open(trained[1])
    with pytest.raises(InputError, match=message):
        classifier.predict(inputs)
    with pytest.raises(InputError, match="top_k"):
        classifier.predict({"text": "hot"}, top_k=0)


def test_open_refuses_missing_or_damaged_files(trained, tmp_path):
    import shutil

    with pytest.raises(NotFoundError, match="no classifier at"):
        Classifier.open(tmp_path / "nothing")
    with pytest.raises(NotFoundError, match=r"classifier\.json missing"):
        Classifier.open(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(trained[1], copy)
    meta = copy / "classifier.json"
    good = meta.read_text()
    meta.write_text(good[: len(good) // 2])
    with pytest.raises(ArtifactError, match=r"classifier\.json: damaged JSON"):
        Classifier.open(copy)
    meta.write_text(good.replace('"classes"', '"klasses"'))
    with pytest.raises(ArtifactError, match=r"classifier\.json: damaged"):
        Classifier.open(copy)
    meta.write_text(good)
    weights = copy / "classifier.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ArtifactError, match="do not match the fingerprint"):
        Classifier.open(copy)
    shutil.copy(trained[1] / "classifier.safetensors", weights)
    shutil.rmtree(copy / "towers")
    with pytest.raises(ArtifactError, match="towers: missing"):
        Classifier.open(copy)


def test_out_dir_is_refused_unless_it_is_an_earlier_classifier_and_force(trained, tmp_path):
    config, out, _ = trained
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="not written by `jointspace classify`"):
        classify(config, foreign)
    assert (foreign / "mine.txt").read_text() == "keep"
    with pytest.raises(OutputExistsError, match="pass --force"):
        classify(config, out)
    before = (out / "classifier.json").read_text()
    assert Classifier.open(out).fingerprint in before  # untouched


def test_towers_train_fine_tunes_the_towers_and_saves_them_tuned(trained, tmp_path, xor_manifest):
    config = copy_config(trained[0])
    config.towers.train = True
    config.train.epochs = 10
    metrics = classify(config, tmp_path / "tuned")
    assert metrics["test"]["accuracy"] >= 0.8 and metrics["val"]["accuracy"] >= 0.8, metrics
    before = load_towers(config).state_dict()  # the same seed: the towers it started from
    classifier = Classifier.open(tmp_path / "tuned")
    after = classifier.towers.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert "towers.text.token_embed.weight" in moved and "towers.image.features.0.0.weight" in moved
    assert not any(k.startswith("towers.text.head.") for k in moved)  # the projection is unused
    # the saved towers and head give the predictions the run recorded
    with (tmp_path / "tuned" / "predictions.csv").open() as handle:
        saved = {r["id"]: r["predicted"] for r in csv.DictReader(handle)}
    for row in rows_of(xor_manifest, "test")[:8]:
        inputs = {"text": row["text"], "image": xor_manifest.parent / row["image"]}
        assert classifier.predict(inputs).label == saved[row["id"]]


def test_towers_train_with_every_layer_locked_is_refused(trained, tmp_path):
    from jointspace.config import ConfigError

    config = copy_config(trained[0])
    config.towers.train = True
    for tower in config.towers.model.towers.values():
        tower.lock = True
    with pytest.raises(ConfigError, match=r"towers\.train: every layer of the towers is locked"):
        classify(config, tmp_path / "x")
    assert not (tmp_path / "x").exists()
