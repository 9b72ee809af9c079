import numpy as np
import pytest

from jointspace.evaluate.probe import linear_probe


def blobs(n_per_class, seed, labels=("cat", "dog", "eel")):
    # well-separated Gaussian blobs around orthogonal centres: linearly separable
    rng = np.random.default_rng(seed)
    centres = 10 * np.eye(len(labels), 5)
    x = np.vstack([c + 0.3 * rng.normal(size=(n_per_class, 5)) for c in centres])
    y = np.repeat(np.array(labels), n_per_class)
    return x, y


def test_separable_blobs_probe_perfectly():
    (tx, ty), (vx, vy), (sx, sy) = blobs(20, 0), blobs(10, 1), blobs(10, 2)
    out = linear_probe(tx, ty, vx, vy, sx, sy)
    assert out["val_accuracy"] == 1.0
    assert out["test_accuracy"] == 1.0
    assert set(out["sweep"]) == {"0.01", "0.1", "1", "10", "100"}
    # every C separates these blobs, so the tie goes to the smallest
    assert out["best_C"] == 0.01
    assert isinstance(out["best_C"], float)


def test_best_c_is_the_val_argmax():
    # noisy overlapping classes make the sweep non-constant
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 10))
    y = (x[:, 0] + 0.8 * rng.normal(size=200) > 0).astype(int)
    out = linear_probe(x[:120], y[:120], x[120:], y[120:], cs=(1e-4, 1e-2, 1.0))
    sweep = out["sweep"]
    assert out["val_accuracy"] == max(sweep.values())
    assert sweep[str(out["best_C"])] == out["val_accuracy"]
    # C=1e-4 shrinks weights to ~0, so it cannot beat a fitted model here
    assert sweep["0.0001"] < out["val_accuracy"]
    assert out["test_accuracy"] is None


def test_unseen_val_label_is_named():
    tx, ty = blobs(10, 4, labels=("cat", "dog"))
    vx, vy = blobs(5, 5, labels=("cat", "yak"))
    with pytest.raises(ValueError, match="'yak'"):
        linear_probe(tx, ty, vx, vy)


def test_unseen_test_label_is_named():
    tx, ty = blobs(10, 6, labels=("cat", "dog"))
    vx, vy = blobs(5, 7, labels=("cat", "dog"))
    sx, sy = blobs(5, 8, labels=("dog", "owl"))
    with pytest.raises(ValueError, match=r"test.*'owl'"):
        linear_probe(tx, ty, vx, vy, sx, sy)


def test_single_class_train_is_rejected():
    tx, ty = blobs(10, 9, labels=("cat",))
    with pytest.raises(ValueError, match="at least 2 classes"):
        linear_probe(tx, ty, tx, ty)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"train_x": np.ones(6)}, r"train_x must be 2-D.*\(6,\)"),
        ({"val_y": np.array(["cat"])}, r"val_y.*\(1,\)"),
        ({"val_x": np.ones((30, 4))}, r"one embedding dim.*\[4, 5\]"),
        ({"test_x": np.ones((3, 5))}, "both test_x and test_y"),
        ({"cs": ()}, "non-empty"),
        ({"cs": (1, -1)}, "positive"),
    ],
)
def test_bad_inputs_raise(kwargs, pattern):
    tx, ty = blobs(10, 10)
    vx, vy = blobs(10, 11)
    args = {"train_x": tx, "train_y": ty, "val_x": vx, "val_y": vy} | kwargs
    with pytest.raises(ValueError, match=pattern):
        linear_probe(**args)


def test_without_val_c_is_cross_validated_on_train():
    from jointspace.evaluate.probe import linear_probe_cv

    (tx, ty), (sx, sy) = blobs(20, 0), blobs(10, 2)
    out = linear_probe_cv(tx, ty, sx, sy)
    assert out["selection"] == "5-fold cross-validation on train"
    assert out["test_accuracy"] == 1.0 and out["best_C"] == 0.01  # every C separates: smallest
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 10))
    y = (x[:, 0] + 0.8 * rng.normal(size=200) > 0).astype(int)
    out = linear_probe_cv(x[:120], y[:120], x[120:], y[120:], cs=(1e-4, 1e-2, 1.0))
    assert out["val_accuracy"] == max(out["sweep"].values()) > out["sweep"]["0.0001"]


def test_cross_validation_needs_two_examples_per_class():
    from jointspace.evaluate.errors import EvaluationError
    from jointspace.evaluate.probe import linear_probe_cv

    x, y = blobs(3, 0)
    out = linear_probe_cv(x, y, x, y)
    assert out["selection"] == "3-fold cross-validation on train"
    with pytest.raises(EvaluationError, match="'eel' has 1"):
        linear_probe_cv(x[:7], y[:7], x, y)
