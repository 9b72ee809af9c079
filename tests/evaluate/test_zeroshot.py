import json

import numpy as np
import pytest
import torch
from PIL import Image

from jointspace.config import ModelConfig, TowerConfig
from jointspace.data import ManifestError, read_manifest
from jointspace.evaluate.errors import EvaluationError
from jointspace.evaluate.zeroshot import (
    class_embeddings,
    class_name,
    class_names,
    ensemble,
    evaluate_zero_shot,
    zero_shot_scores,
)
from jointspace.models.build import build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    towers = {
        "text": TowerConfig("transformer", dict(width=16, depth=1, heads=2)),
        "image": TowerConfig("cnn", dict(image_size=8, widths=[8])),
    }
    corpus = ["a handwritten seven", "the digit three", "an image of zero"]
    return build_model(ModelConfig(embed_dim=8, towers=towers), corpus=corpus).eval()


def test_template_ensembling_equals_the_explicit_mean(model):
    templates = ("{}", "a picture of a {}", "the digit {}")
    names = ["seven", "three"]
    got = class_embeddings(model, names, templates)
    for name, vector in zip(names, got, strict=True):
        prompts = model.encode([t.format(name) for t in templates], "text")
        mean = (prompts / np.linalg.norm(prompts, axis=1, keepdims=True)).mean(0)
        np.testing.assert_allclose(vector, mean / np.linalg.norm(mean), atol=1e-6)
    assert np.allclose(np.linalg.norm(got, axis=1), 1)


def test_ensemble_of_one_prompt_is_that_prompt_normalised():
    x = np.array([[[3.0, 4.0]]])
    np.testing.assert_allclose(ensemble(x), [[0.6, 0.8]])


def test_scores_give_topk_per_class_and_confusion_by_hand():
    labels = ["cat", "dog", "fox"]
    scores = np.array(
        [[0.9, 0.1, 0.0], [0.1, 0.2, 0.7], [0.6, 0.5, 0.0], [0.0, 0.2, 0.9]]
    )  # predictions: cat, fox, cat, fox
    targets = np.array([0, 0, 1, 2])
    result = zero_shot_scores(scores, targets, labels, ks=(1, 2))
    assert result.metrics["top1"] == 0.5  # rows 0 and 3
    assert result.metrics["top2"] == 0.75  # row 2: dog is second; row 1: cat is third
    assert result.per_class == {"cat": 0.5, "dog": 0.0, "fox": 1.0}
    assert result.metrics["mean_per_class"] == pytest.approx(0.5)
    assert result.confusion.tolist() == [[1, 0, 1], [1, 0, 0], [0, 0, 1]]
    assert result.metrics["chance_top1"] == pytest.approx(1 / 3)


def test_evaluate_zero_shot_on_digits_labels(model, digits_manifest):
    test = read_manifest(digits_manifest).split("zeroshot")
    result = evaluate_zero_shot(model, test, templates=("the digit {}",))
    images = set(test.column("image"))
    assert result.labels == ["eight", "nine"] and result.confusion.sum() == len(images)
    # top-1 recomputed by brute force: each image's nearest class prompt, straight from encode
    label_of = {row["image"]: row["label"] for row in test.rows}
    paths = sorted(label_of)
    vectors = model.encode([digits_manifest.parent / p for p in paths], "image")
    prompts = model.encode([f"the digit {label}" for label in result.labels], "text")
    nearest = np.argmax(vectors @ prompts.T, axis=1)
    right = [result.labels[i] == label_of[p] for i, p in zip(nearest, paths, strict=True)]
    assert result.metrics["top1"] == pytest.approx(np.mean(right), abs=1e-12)
    assert result.metrics["chance_top1"] == 0.5 and result.metrics["chance_top5"] == 1.0
    assert np.trace(result.confusion) == sum(right)


def test_labels_are_required_and_names_readable(model, tmp_path):
    (tmp_path / "m.csv").write_text("text,label\na cat,\n")
    with pytest.raises(ManifestError, match=r"row 1, column 'label': empty"):
        evaluate_zero_shot(model, read_manifest(tmp_path / "m.csv"), modality="text")
    assert class_name("food-fruit") == "food fruit"
    with pytest.raises(EvaluationError, match="must each contain"):
        class_embeddings(model, ["a"], ("no slot",))


def test_class_names_default_to_the_leaf_of_the_label_path():
    assert class_name("shapes/stars") == "stars"
    assert class_name("animals/big_cats/snow-leopard") == "snow leopard"
    assert class_name("shapes/stars", "path") == "shapes/stars"
    assert class_name("a_b-c", "path") == "a b c"
    labels = ["shapes/stars", "shapes/circles"]
    assert class_names(labels) == ({"shapes/stars": "stars", "shapes/circles": "circles"}, "leaf")
    assert class_names(labels, "path")[0]["shapes/stars"] == "shapes/stars"


def test_class_names_from_a_mapping_or_a_file(tmp_path):
    labels = ["shapes/stars", "shapes/circles"]
    mapping = {"shapes/stars": "a star", "shapes/circles": "a round shape", "unused": "x"}
    names, naming = class_names(labels, mapping)
    assert names == {"shapes/stars": "a star", "shapes/circles": "a round shape"}
    assert naming == "mapping"
    (tmp_path / "names.json").write_text(json.dumps(mapping))
    names, naming = class_names(labels, tmp_path / "names.json")
    assert names["shapes/circles"] == "a round shape" and naming.startswith("file:")
    (tmp_path / "names.yaml").write_text("shapes/stars: star\n")
    with pytest.raises(EvaluationError, match=r"no name for 1 of 2 labels: 'shapes/circles'"):
        class_names(labels, tmp_path / "names.yaml")
    (tmp_path / "list.yaml").write_text("- star\n")
    with pytest.raises(EvaluationError, match="must map each label"):
        class_names(labels, tmp_path / "list.yaml")
    with pytest.raises(EvaluationError, match="not a file, nor one of leaf, path"):
        class_names(labels, "lef")


def test_zero_shot_prompts_use_the_chosen_names_and_record_them(model, tmp_path, monkeypatch):
    rows = [f"{i},img{i}.png,shapes/{'stars' if i % 2 else 'round_things'}" for i in range(4)]
    (tmp_path / "m.csv").write_text("id,image,label\n" + "\n".join(rows) + "\n")
    for i in range(4):
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(tmp_path / f"img{i}.png")
    manifest = read_manifest(tmp_path / "m.csv")
    prompts = []
    encode = model.encode

    def spy(inputs, modality, **kwargs):
        if modality == "text":
            prompts.extend(inputs)
        return encode(inputs, modality, **kwargs)

    monkeypatch.setattr(model, "encode", spy)
    result = evaluate_zero_shot(model, manifest, templates=("a {}",))
    assert prompts == ["a round things", "a stars"]
    assert result.naming == "leaf"
    assert result.class_names == {"shapes/round_things": "round things", "shapes/stars": "stars"}
    prompts.clear()
    result = evaluate_zero_shot(model, manifest, templates=("a {}",), names="path")
    assert prompts == ["a shapes/round things", "a shapes/stars"] and result.naming == "path"


def test_ties_count_against_the_model_in_zero_shot():
    # a collapsed model scores every class alike: it must be wrong, not right for class 0
    scores = np.zeros((4, 3))
    result = zero_shot_scores(scores, np.array([0, 0, 1, 2]), ["a", "b", "c"], ks=(1, 2, 3))
    assert result.metrics["top1"] == 0.0 and result.metrics["top2"] == 0.0
    assert result.metrics["top3"] == 1.0
    assert result.metrics["chance_top1"] == pytest.approx(1 / 3)
    assert result.metrics["chance_top2"] == pytest.approx(2 / 3)
    assert (result.predictions != np.array([0, 0, 1, 2])).all()


def test_zero_shot_refuses_nan_scores_and_leaves_out_items_with_two_labels(model, tmp_path):
    with pytest.raises(EvaluationError, match="NaN or infinite"):
        zero_shot_scores(np.full((2, 2), np.nan), np.array([0, 1]), ["a", "b"])
    (tmp_path / "m.csv").write_text("text,label\ncat,animal\ncat,pet\ndog,animal\nrock,thing\n")
    result = evaluate_zero_shot(model, read_manifest(tmp_path / "m.csv"), modality="text")
    assert result.excluded_items == 1 and result.confusion.sum() == 2
