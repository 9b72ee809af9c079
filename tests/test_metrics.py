import numpy as np
import pytest

from jointspace.evaluate import chance_metrics, ranking_stats, retrieval_metrics


def naive_stats(scores, relevant):
    ranks, aps = [], []
    for s, r in zip(scores, relevant, strict=False):
        order = sorted(range(len(s)), key=lambda j: (-s[j], bool(r[j]), j))
        hits = [bool(r[j]) for j in order]
        ranks.append(hits.index(True) + 1)
        found, precisions = 0, []
        for position, hit in enumerate(hits, start=1):
            if hit:
                found += 1
                precisions.append(found / position)
        aps.append(sum(precisions) / len(precisions))
    return np.array(ranks), np.array(aps)


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


def test_chance_recall_is_fraction_relevant():
    relevant = np.zeros((200, 50), dtype=bool)
    relevant[:, :5] = True
    m = chance_metrics(relevant, ks=(1,), draws=10)
    assert m["R@1"] == pytest.approx(0.1, abs=0.03)


def test_query_without_relevant_item_is_an_error():
    with pytest.raises(ValueError, match="at least one relevant"):
        ranking_stats(np.zeros((2, 2)), np.array([[True, False], [False, False]]))


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
