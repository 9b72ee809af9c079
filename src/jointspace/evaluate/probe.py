"""Linear probe: logistic regression on frozen embeddings, C chosen on a validation split
or, without one, by stratified cross-validation on the train split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from jointspace.evaluate.errors import EvaluationError

CV_FOLDS = 5


def _check_split(x: np.ndarray, y: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2:
        raise EvaluationError(f"{name}_x must be 2-D (rows × dims), got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise EvaluationError(
            f"{name}_y must be 1-D with one label per row of {name}_x {x.shape}, got {y.shape}"
        )
    if len(x) == 0:
        raise EvaluationError(f"{name} split is empty (shape {x.shape})")
    return x, y


def _check_labels(y: np.ndarray, known: set, name: str) -> None:
    unseen = sorted({str(label) for label in y.tolist() if label not in known})
    if unseen:
        # an unseen class can never be predicted, so its accuracy would be silently capped
        raise EvaluationError(f"{name} labels not in train: {', '.join(map(repr, unseen))}")


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    test_x: np.ndarray | None = None,
    test_y: np.ndarray | None = None,
    cs: Sequence[float] = (0.01, 0.1, 1, 10, 100),
    seed: int = 0,
) -> dict:
    """Fit one logistic regression per C, keep the best on val (ties: smaller C), score on test."""
    train_x, train_y = _check_split(train_x, train_y, "train")
    val_x, val_y = _check_split(val_x, val_y, "val")
    if (test_x is None) != (test_y is None):
        raise EvaluationError("pass both test_x and test_y, or neither")
    if not cs or any(c <= 0 for c in cs):
        raise EvaluationError(f"cs must be a non-empty sequence of positive values, got {cs!r}")
    classes = set(train_y.tolist())
    if len(classes) < 2:
        raise EvaluationError(
            f"train needs at least 2 classes, got {len(classes)}: {sorted(classes)}"
        )
    _check_labels(val_y, classes, "val")
    dims = {train_x.shape[1], val_x.shape[1]}
    if test_x is not None:
        test_x, test_y = _check_split(test_x, test_y, "test")
        _check_labels(test_y, classes, "test")
        dims.add(test_x.shape[1])
    if len(dims) > 1:
        raise EvaluationError(
            f"train, val and test must share one embedding dim, got {sorted(dims)}"
        )

    sweep: dict[str, float] = {}
    best_c, best_acc, best_model = None, -1.0, None
    # ascending order plus a strict ">" makes ties go to the smaller (more regularised) C
    for c in sorted(set(cs)):
        model = LogisticRegression(C=c, max_iter=1000, random_state=seed).fit(train_x, train_y)
        acc = float(model.score(val_x, val_y))
        sweep[str(c)] = acc
        if acc > best_acc:
            best_c, best_acc, best_model = c, acc, model
    test_acc = None if test_x is None else float(best_model.score(test_x, test_y))
    return {
        "best_C": float(best_c),
        "val_accuracy": best_acc,
        "test_accuracy": test_acc,
        "sweep": sweep,
        "selection": "val split",
    }


def linear_probe_cv(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    cs: Sequence[float] = (0.01, 0.1, 1, 10, 100),
    folds: int = CV_FOLDS,
    seed: int = 0,
) -> dict:
    """Without a val split: C chosen by stratified K-fold cross-validation on train (mean fold
    accuracy, ties: smaller C), refitted on all of train, scored on test."""
    train_x, train_y = _check_split(train_x, train_y, "train")
    test_x, test_y = _check_split(test_x, test_y, "test")
    classes, counts = np.unique(train_y, return_counts=True)
    if len(classes) < 2:
        raise EvaluationError(f"train needs at least 2 classes, got {classes.tolist()}")
    _check_labels(test_y, set(train_y.tolist()), "test")
    folds = min(folds, int(counts.min()))
    if folds < 2:
        rare = classes[counts.argmin()].item()
        raise EvaluationError(
            f"cross-validation needs 2 or more train examples per class; {rare!r} has 1"
        )
    if train_x.shape[1] != test_x.shape[1]:
        raise EvaluationError(
            f"train and test dims differ: {train_x.shape[1]} vs {test_x.shape[1]}"
        )
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    sweep: dict[str, float] = {}
    for c in sorted(set(cs)):
        accuracies = [
            LogisticRegression(C=c, max_iter=1000, random_state=seed)
            .fit(train_x[fit], train_y[fit])
            .score(train_x[held], train_y[held])
            for fit, held in splitter.split(train_x, train_y)
        ]
        sweep[str(c)] = float(np.mean(accuracies))
    best = max(sweep, key=lambda c: (sweep[c], -float(c)))  # ties: the smaller C
    model = LogisticRegression(C=float(best), max_iter=1000, random_state=seed)
    model.fit(train_x, train_y)
    return {
        "best_C": float(best),
        "val_accuracy": sweep[best],
        "test_accuracy": float(model.score(test_x, test_y)),
        "sweep": sweep,
        "selection": f"{folds}-fold cross-validation on train",
    }
