import itertools

import numpy as np
import pytest

from jointspace.errors import JointspaceError
from jointspace.evaluate import chance_metrics, ranking_stats, retrieval_metrics
from jointspace.evaluate.chance import expected_average_precision
from jointspace.evaluate.errors import EvaluationError
from jointspace.evaluate.retrieval import score_retrieval
from ranking_reference import naive_stats


def test_ranking_stats_match_naive_loops():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(40, 30)).astype(float)  # many ties
    relevant = rng.random((40, 30)) < 0.15
    relevant[np.arange(40), rng.integers(0, 30, 40)] = True  # every query has one
    ranks, aps = ranking_stats(scores, relevant)
    naive_ranks, naive_aps = naive_stats(scores, relevant)
    np.testing.assert_array_equal(ranks, naive_ranks)
    np.testing.assert_allclose(aps, naive_aps, atol=1e-12)


def test_retrieval_metrics_on_a_worked_example():
    scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.7]])
    relevant = np.array([[False, True, True], [True, False, False]])
    m = retrieval_metrics(scores, relevant, ks=(1, 2))
    # query 0: relevant at ranks 2 and 3 → AP = (1/2 + 2/3) / 2; query 1: relevant at rank 3.
    assert m["R@1"] == 0.0
    assert m["R@2"] == 0.5
    assert m["mAP"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1 / 3) / 2)
    assert m["median_rank"] == 2.5


def enumerate_rankings(relevant):
    """First relevant ranks and APs of every query under every permutation of the gallery."""
    ranks, aps = [], []
    for perm in itertools.permutations(range(relevant.shape[1])):
        scores = np.tile(-np.array(perm, dtype=float), (len(relevant), 1))
        r, a = ranking_stats(scores, relevant)
        ranks.append(r)
        aps.append(a)
    return np.array(ranks), np.array(aps)


CASES = [
    np.array([[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 1, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1]]),
    np.array([[0, 0, 1, 0, 0], [0, 1, 0, 0, 1]]),
    np.array([[1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 1], [1, 1, 1, 0, 0, 0, 0]]),
    np.array([[1, 0], [0, 1]]),
]


@pytest.mark.parametrize("relevant", CASES)
def test_chance_is_exact_against_every_permutation(relevant):
    relevant = relevant.astype(bool)
    ranks, aps = enumerate_rankings(relevant)
    ks = (1, 2, 3, 5, 10)
    m = chance_metrics(relevant, ks=ks)
    for k in ks:
        assert m[f"R@{k}"] == pytest.approx((ranks <= k).mean(), abs=1e-9)
    assert m["mAP"] == pytest.approx(aps.mean(), abs=1e-9)
    # median of the first relevant rank pooled over queries and rankings
    assert m["median_rank"] == np.median(ranks.ravel())


def test_chance_matches_monte_carlo_at_realistic_sizes():
    # 41 classes of 3 to 12 images among 300: the report's old 5 draws were off by a third
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 41, 300)
    relevant = labels[:120, None] == labels[None, :]
    m = chance_metrics(relevant, ks=(1, 5, 10))
    ks = (1, 5, 10)
    draws = [retrieval_metrics(rng.random(relevant.shape), relevant, ks) for _ in range(400)]
    for name in ("R@1", "R@5", "R@10", "mAP"):
        sampled = np.array([d[name] for d in draws])
        assert abs(m[name] - sampled.mean()) < 4 * sampled.std() / np.sqrt(len(sampled)) + 1e-4
    assert m["R@1"] == pytest.approx((relevant.sum(1) / 300).mean(), abs=1e-12)
    assert abs(m["median_rank"] - np.median([d["median_rank"] for d in draws])) <= 2


def test_expected_ap_closed_form_edge_cases():
    assert expected_average_precision(1, np.array([1]))[0] == 1.0
    assert expected_average_precision(7, np.array([7]))[0] == pytest.approx(1.0)
    harmonic = sum(1 / j for j in range(1, 11))
    assert expected_average_precision(10, np.array([1]))[0] == pytest.approx(harmonic / 10)


def test_chance_sits_beside_every_metric_in_the_retrieval_result():
    relevant = np.eye(4, dtype=bool)
    m = score_retrieval(np.eye(4), relevant, ("text", "image"), (1, 2), relevance="pairs")
    assert m["relevance"] == "pairs"
    for direction in ("text_to_image", "image_to_text"):
        assert m[f"{direction}/R@1"] == 1.0
        assert m[f"{direction}/chance_R@1"] == pytest.approx(0.25)
        assert m[f"{direction}/chance_R@2"] == pytest.approx(0.5)
        assert m[f"{direction}/chance_mAP"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
        assert m[f"{direction}/chance_median_rank"] == 2.5
        assert m[f"{direction}/queries"] == 4 and m[f"{direction}/excluded_queries"] == 0
    assert m["chance_mean_recall"] == pytest.approx(0.375) and m["primary"] == 1.0


def test_query_without_relevant_item_is_an_error_for_ranking_stats():
    with pytest.raises(ValueError, match="at least one relevant"):
        ranking_stats(np.zeros((2, 2)), np.array([[True, False], [False, False]]))


def test_queries_without_relevant_items_are_excluded_and_counted():
    relevant = np.array([[True, False, False], [False, False, False], [False, False, True]])
    scores = np.array([[0.9, 0.1, 0.0], [0.5, 0.4, 0.3], [0.9, 0.1, 0.0]])
    m = score_retrieval(scores, relevant, ("text", "image"), (1,))
    assert m["text_to_image/R@1"] == 0.5  # query 1 is neither a hit nor a miss
    assert m["text_to_image/queries"] == 2 and m["text_to_image/excluded_queries"] == 1
    assert m["text_to_image/chance_R@1"] == pytest.approx(1 / 3)
    assert m["image_to_text/excluded_queries"] == 1  # gallery item 1 is nobody's answer


@pytest.mark.parametrize(
    "relevant",
    [np.zeros((0, 3), bool), np.zeros((3, 0), bool), np.zeros((2, 3), bool)],
    ids=["no queries", "no gallery", "nothing relevant"],
)
def test_nothing_to_score_is_a_clear_error_not_nan(relevant):
    with pytest.raises(EvaluationError) as error:
        retrieval_metrics(np.zeros(relevant.shape), relevant)
    assert isinstance(error.value, JointspaceError)
    with pytest.raises(EvaluationError):
        chance_metrics(relevant)


def test_nan_scores_are_a_clear_error():
    scores = np.array([[np.nan, 0.1], [0.2, 0.1]])
    with pytest.raises(EvaluationError, match="NaN or infinite"):
        retrieval_metrics(scores, np.eye(2, dtype=bool))


def test_ties_count_against_the_model():
    # Constant scores: every irrelevant item ranks above the relevant ones.
    relevant = np.array([[True, False, False, False], [False, True, False, True]])
    m = retrieval_metrics(np.zeros((2, 4)), relevant, ks=(1, 3))
    assert m["R@1"] == 0.0 and m["R@3"] == 0.5
    assert m["median_rank"] == (4 + 3) / 2
    assert m["mAP"] == pytest.approx((1 / 4 + (1 / 3 + 2 / 4) / 2) / 2)
    # A tie broken against the model: the relevant item shares the top score with another.
    ranks, _ = ranking_stats(np.array([[1.0, 1.0, 0.0]]), np.array([[True, False, False]]))
    assert ranks.tolist() == [2]
