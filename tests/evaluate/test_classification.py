"""Classification metrics against scikit-learn and by hand."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from jointspace.evaluate.classification import ClassificationEvaluator, classification_metrics
from jointspace.evaluate.errors import EvaluationError


def test_metrics_equal_scikit_learn():
    rng = np.random.default_rng(0)
    truth, predicted = rng.integers(0, 6, 300), rng.integers(0, 5, 300)
    classes = list("abcdefg")  # g never occurs: left out of macro-F1 and the per-class table
    metrics = classification_metrics(truth, predicted, classes)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-12)
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(truth, predicted, average="macro"), abs=1e-12
    )
    assert np.array_equal(
        np.array(metrics["confusion"]), confusion_matrix(truth, predicted, labels=range(7))
    )
    assert set(metrics["per_class"]) == set("abcdef")
    assert metrics["per_class"]["a"]["support"] == int((truth == 0).sum())


def test_per_group_accuracy_by_hand():
    metrics = classification_metrics([0, 1, 1, 0], [0, 1, 0, 1], ["x", "y"], ["q", "q", "r", "r"])
    assert metrics["per_group"] == {
        "q": {"accuracy": 1.0, "rows": 2},
        "r": {"accuracy": 0.0, "rows": 2},
    }


def test_evaluator_names_its_primary_metric():
    evaluator = ClassificationEvaluator([0, 1, 2], ["a", "b", "c"])
    assert evaluator([0, 1, 1])[evaluator.primary_metric] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("truth", "predicted", "message"),
    [([], [], "no rows"), ([0, 1], [0], "1 predictions"), ([0, 5], [0, 1], "outside")],
)
def test_bad_input_is_a_clear_error(truth, predicted, message):
    with pytest.raises(EvaluationError, match=message):
        classification_metrics(truth, predicted, ["a", "b"])
