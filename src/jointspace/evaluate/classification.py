"""Classification metrics: accuracy, macro-F1, a per-class table, the confusion matrix, groups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jointspace.evaluate.errors import EvaluationError


def classification_metrics(
    truth: Sequence[int],
    predicted: Sequence[int],
    classes: Sequence[str],
    groups: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Scores of ``predicted`` class indices against ``truth``, both indexing ``classes``.

    Macro-F1 averages over the classes present in ``truth`` or ``predicted`` (scikit-learn's
    ``f1_score(average="macro")``); ``confusion[i][j]`` counts rows of class i predicted as j.
    """
    y, p = np.asarray(truth, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    n = len(classes)
    if y.shape != p.shape or y.ndim != 1:
        raise EvaluationError(f"{len(y)} labels but {len(p)} predictions")
    if len(y) == 0:
        raise EvaluationError("no rows to score")
    if ((y < 0) | (y >= n) | (p < 0) | (p >= n)).any():
        raise EvaluationError(f"a class index outside 0..{n - 1}")
    confusion = np.bincount(y * n + p, minlength=n * n).reshape(n, n)
    hits = np.diag(confusion).astype(float)
    support, chosen = confusion.sum(1), confusion.sum(0)
    precision = np.divide(hits, chosen, out=np.zeros(n), where=chosen > 0)
    recall = np.divide(hits, support, out=np.zeros(n), where=support > 0)
    f1 = np.divide(2 * hits, support + chosen, out=np.zeros(n), where=support + chosen > 0)
    seen = (support + chosen) > 0
    metrics: dict[str, Any] = {
        "accuracy": float(hits.sum() / len(y)),
        "macro_f1": float(f1[seen].mean()),
        "rows": len(y),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
            if seen[i]
        },
        "confusion": confusion.tolist(),
    }
    if groups is not None:
        if len(groups) != len(y):
            raise EvaluationError(f"{len(groups)} group values for {len(y)} rows")
        g = np.asarray(groups, dtype=object)
        metrics["per_group"] = {
            str(name): {
                "accuracy": float((y[g == name] == p[g == name]).mean()),
                "rows": int((g == name).sum()),
            }
            for name in sorted(set(groups))
        }
    return metrics


class ClassificationEvaluator:
    """Scores predictions on one labelled split; ``primary_metric`` is what model selection uses."""

    primary_metric = "accuracy"

    def __init__(self, truth: Sequence[int], classes: Sequence[str], groups=None):
        self.truth, self.classes, self.groups = list(truth), list(classes), groups

    def __call__(self, predicted: Sequence[int]) -> dict[str, Any]:
        return classification_metrics(self.truth, predicted, self.classes, self.groups)
