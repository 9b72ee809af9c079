import math

import numpy as np
import pytest

from jointspace.evaluate.geometry import (
    alignment,
    diagnose,
    effective_rank,
    hubness,
    interpret,
    modality_gap,
    uniformity,
)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def random_unit(n, d, seed):
    return unit(np.random.default_rng(seed).normal(size=(n, d)))


def test_modality_gap_of_known_centroids():
    # a's centroid is (1, 0, 0) and b's is (0, 0.5, 0): distance sqrt(1 + 0.25)
    a = np.array([[1.0, 0, 0], [2.0, 0, 0]])
    b = np.array([[0, 1.0, 0], [0, 0, 1.0], [0, 1.0, 0], [0, 0, -3.0]])
    assert modality_gap(a, b) == pytest.approx(math.sqrt(1.25))
    assert modality_gap(a, a) == pytest.approx(0.0)


def test_alignment_equals_explicit_loop():
    x, y = random_unit(15, 6, 1), random_unit(15, 6, 2)
    for alpha in (1, 2, 3):
        expected = sum(
            math.sqrt(sum((xi - yi) ** 2 for xi, yi in zip(xr, yr, strict=True))) ** alpha
            for xr, yr in zip(x, y, strict=True)
        ) / len(x)
        assert alignment(x, y, alpha=alpha) == pytest.approx(expected, rel=1e-10)


def test_alignment_is_zero_for_identical_pairs():
    x = random_unit(10, 4, 3)
    assert alignment(x, x) == pytest.approx(0.0, abs=1e-12)
    # antipodal pairs are the worst case: ||x - (-x)||² = 4
    assert alignment(x, -x) == pytest.approx(4.0)


def test_uniformity_equals_explicit_double_loop():
    x = random_unit(20, 5, 4)
    terms = [
        math.exp(-2 * float(np.sum((x[i] - x[j]) ** 2)))
        for i in range(len(x))
        for j in range(i + 1, len(x))
    ]
    assert uniformity(x) == pytest.approx(math.log(sum(terms) / len(terms)), abs=1e-6)


def test_uniform_sphere_is_more_negative_than_tight_cluster():
    spread = random_unit(500, 16, 5)
    cluster = unit(np.ones(16) + 0.05 * np.random.default_rng(6).normal(size=(500, 16)))
    assert uniformity(spread) < -3.5
    assert uniformity(cluster) > -0.5
    assert uniformity(spread) < uniformity(cluster)


def test_uniformity_subsamples_deterministically():
    x = random_unit(300, 8, 7)
    sub = uniformity(x, max_points=100, seed=1)
    assert sub == uniformity(x, max_points=100, seed=1)
    assert sub != uniformity(x)
    assert sub == pytest.approx(uniformity(x), abs=0.2)


@pytest.mark.parametrize("r", [1, 3, 5])
def test_effective_rank_of_isotropic_rank_r_data_is_r(r):
    # rows ±e_i for i < r: centroid 0, so the centred matrix has r equal singular values
    eye = np.eye(8)[:r]
    x = np.vstack([eye, -eye])
    assert effective_rank(x) == pytest.approx(r, rel=1e-9)


def test_effective_rank_of_rank_one_data_is_one():
    # unequal counts along one axis: after centring, every row is a multiple of e_0
    x = np.array([[1.0, 0, 0], [1.0, 0, 0], [-1.0, 0, 0]])
    assert effective_rank(x) == pytest.approx(1.0, rel=1e-9)


def test_effective_rank_of_identical_rows_is_zero():
    assert effective_rank(np.ones((4, 3))) == 0.0


def test_hubness_with_one_item_nearest_every_query():
    # gallery 0 points straight up; every query leans up, so it is everyone's top-1
    gallery = np.array([[0, 0, 1.0], [1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    queries = np.array([[0.1, 0, 1.0], [-0.1, 0, 1.0], [0, 0.1, 1.0], [0, -0.1, 1.0]])
    h = hubness(queries, gallery, k=1)
    assert h["max_occurrence"] == len(queries)
    assert h["antihub_fraction"] == pytest.approx(4 / 5)
    # N_1 = (4, 0, 0, 0, 0): mean 0.8, deviations (3.2, -0.8 x4), std 1.6
    expected_skew = (3.2**3 + 4 * (-0.8) ** 3) / 5 / 1.6**3
    assert h["skewness"] == pytest.approx(expected_skew)
    assert h["skewness"] > 1


def test_hubness_of_even_occurrence_has_zero_skew():
    x = np.eye(4)
    h = hubness(x, x, k=1)
    assert h == {"skewness": 0.0, "max_occurrence": 1, "antihub_fraction": 0.0}


def test_hubness_rejects_k_larger_than_gallery():
    with pytest.raises(ValueError, match=r"k=6.*gallery size 5"):
        hubness(random_unit(3, 4, 8), random_unit(5, 4, 9), k=6)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: modality_gap(np.ones(3), np.ones((3, 3))), r"2-D.*\(3,\)"),
        (lambda: modality_gap(np.ones((3, 2)), np.ones((3, 4))), r"\(3, 2\).*\(3, 4\)"),
        (lambda: alignment(np.ones((3, 2)), np.ones((4, 2))), r"\(3, 2\).*\(4, 2\)"),
        (lambda: uniformity(np.ones((1, 3))), r"at least 2 rows.*\(1, 3\)"),
        (lambda: effective_rank(np.zeros((3, 2))), r"all-zero rows"),
        (lambda: hubness(np.ones((3, 2)), np.ones((3, 5))), r"\(3, 2\).*\(3, 5\)"),
    ],
)
def test_bad_shapes_raise_value_error_naming_shape(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_diagnose_keys_and_values():
    emb = {"text": random_unit(30, 8, 10), "image": random_unit(30, 8, 11)}
    emb["audio"] = random_unit(12, 8, 12)
    text, image = emb["text"], emb["image"]
    out = diagnose(emb, (text, image))
    for m, x in emb.items():
        assert out[f"{m}/effective_rank"] == pytest.approx(effective_rank(x))
        assert out[f"{m}/uniformity"] == pytest.approx(uniformity(x))
    # 12 centred rows in 8 dims: rank ceiling is 8
    assert out["audio/effective_rank_fraction"] == pytest.approx(effective_rank(emb["audio"]) / 8)
    assert out["modality_gap"] == pytest.approx(modality_gap(text, image))
    assert out["alignment"] == pytest.approx(alignment(text, image))
    h = hubness(text, image)
    assert out["text_to_image/hubness_skew"] == pytest.approx(h["skewness"])
    assert out["text_to_image/hubness_max_occurrence"] == h["max_occurrence"]
    assert "image_to_text/antihub_fraction" in out
    assert not any(k.startswith("audio_to") or k.startswith("image_to_audio") for k in out)
    assert all(type(v) is float for v in out.values())


def test_diagnose_single_modality_and_small_gallery():
    out = diagnose({"text": random_unit(5, 3, 13)})
    assert set(out) == {"text/effective_rank", "text/effective_rank_fraction", "text/uniformity"}
    # gallery of 4 < default k=10 is clamped rather than rejected
    two = diagnose({"a": random_unit(6, 3, 14), "b": random_unit(4, 3, 15)})
    assert two["a_to_b/hubness_max_occurrence"] == 6.0


def test_diagnose_rejects_empty():
    with pytest.raises(ValueError, match="empty"):
        diagnose({})


def test_interpret_thresholds():
    lines = interpret(
        {
            "modality_gap": 0.8,
            "text/uniformity": -3.8,
            "image/uniformity": -0.2,
            "text_to_image/hubness_skew": 2.5,
            "image_to_text/hubness_skew": 0.1,
            "alignment": 1.0,
            "mystery": 1.0,
        }
    )
    assert "separate cones" in lines["modality_gap"]
    assert "well spread" in lines["text/uniformity"]
    assert "collapsed" in lines["image/uniformity"]
    assert "hubs" in lines["text_to_image/hubness_skew"]
    assert "little hubness" in lines["image_to_text/hubness_skew"]
    assert "0.50" in lines["alignment"]
    assert "no interpretation" in lines["mystery"]
    assert "small modality gap" in interpret({"modality_gap": 0.05})["modality_gap"]


def test_interpret_covers_every_diagnose_key():
    out = diagnose({"t": random_unit(20, 4, 16), "i": random_unit(20, 4, 17)})
    lines = interpret(out)
    assert set(lines) == set(out)
    assert not any("no interpretation" in line for line in lines.values())
