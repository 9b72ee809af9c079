import numpy as np
import pytest
import torch

from jointspace.config import ModelConfig, TowerConfig
from jointspace.data import ManifestError, read_manifest
from jointspace.evaluate.zeroshot import (
    class_embeddings,
    class_name,
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
    assert 0 <= result.metrics["top1"] <= 1 and result.metrics["top5"] == 1.0


def test_labels_are_required_and_names_readable(model, tmp_path):
    (tmp_path / "m.csv").write_text("text,label\na cat,\n")
    with pytest.raises(ManifestError, match=r"row 1, column 'label': empty"):
        evaluate_zero_shot(model, read_manifest(tmp_path / "m.csv"), modality="text")
    assert class_name("food-fruit") == "food fruit"
    with pytest.raises(ValueError, match="must each contain"):
        class_embeddings(model, ["a"], ("no slot",))
