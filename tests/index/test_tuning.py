"""Approximate structures keep their promise: tuned settings reach recall@10 >= 0.95, the recall
recorded is the recall measured, IVF-PQ trains on the whole corpus, ?kind=auto picks sensibly."""

import faiss
import numpy as np
import pytest

from jointspace.index import tuning
from jointspace.index.errors import IndexUriError
from jointspace.index.tuning import (
    EF_LADDER,
    build_ivfpq,
    choose_kind,
    new_hnsw,
    search_ivfpq_exact,
    search_params,
    tune,
)


def clustered(n=4000, dim=32, clusters=40, spread=0.6, seed=0):
    """Unit vectors around random centres, rows sorted by cluster (the corpus drifts)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    labels = np.sort(rng.integers(0, clusters, n))
    x = centres[labels] + spread * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def naive_recall(found, x, rows, k=10):
    """Recall@k against a full brute-force ranking, each query's own row dropped from both."""
    scores = x[rows] @ x.T
    total = 0
    for row, got, ranking in zip(rows, found, scores, strict=True):
        truth = [i for i in np.argsort(-ranking) if i != row][:k]
        got = [i for i in got if i != row and i >= 0][:k]
        total += len(set(truth) & set(got))
    return total / (k * len(rows))


def rescored(index, x, queries, nprobe, shortlist, k=11):
    """IVF-PQ's shortlist re-scored with the exact vectors, written out independently."""
    _, ids = index.search(queries, shortlist, params=faiss.SearchParametersIVF(nprobe=nprobe))
    out = []
    for query, cand in zip(queries, ids, strict=True):
        cand = cand[cand >= 0]
        out.append(cand[np.argsort(-(x[cand] @ query))][:k])
    return out


@pytest.fixture(scope="module")
def corpus():
    return clustered()


@pytest.fixture(scope="module")
def ivfpq(corpus):
    return build_ivfpq(corpus)


def test_tuned_hnsw_reaches_095_at_the_cheapest_rung_and_records_the_true_recall(corpus):
    hnsw = new_hnsw(corpus.shape[1], M=4)  # a sparse graph: the first rung is not enough
    hnsw.add_with_ids(corpus, np.arange(len(corpus), dtype=np.int64))
    tuned = tune(hnsw, corpus, k=10, target=0.95, sample=200, seed=0)
    assert tuned["reached"] and tuned["recall_at_10"] >= 0.95 and tuned["recall_queries"] == 200
    assert tuned["prefer_exact"] is False  # efSearch·2M well below the 4,000 rows
    rows = tuning.held_out(len(corpus), 200, 0)

    def measured(ef):
        params = faiss.SearchParametersHNSW(efSearch=ef)
        return naive_recall(hnsw.search(corpus[rows], 11, params=params)[1], corpus, rows)

    assert tuned["recall_at_10"] == pytest.approx(measured(tuned["ef_search"]), abs=1e-12)
    rung = EF_LADDER.index(tuned["ef_search"])
    assert rung > 0 and measured(EF_LADDER[rung - 1]) < 0.95  # the cheaper rung falls short


def test_tuned_ivfpq_reaches_095_with_exact_rescoring_and_records_the_true_recall(corpus, ivfpq):
    tuned = tune(ivfpq, corpus, k=10, target=0.95, sample=200, seed=0)
    assert tuned["reached"] and tuned["recall_at_10"] >= 0.95 and not tuned["prefer_exact"]
    rows = tuning.held_out(len(corpus), 200, 0)
    found = rescored(ivfpq, corpus, corpus[rows], tuned["nprobe"], tuned["shortlist"])
    assert tuned["recall_at_10"] == pytest.approx(naive_recall(found, corpus, rows), abs=1e-12)
    # PQ alone (a shortlist of k+1) at the same nprobe falls short: the re-scoring is needed.
    alone = rescored(ivfpq, corpus, corpus[rows], tuned["nprobe"], 11)
    assert naive_recall(alone, corpus, rows) < 0.95


def test_exact_rescoring_returns_exact_scores_and_row_ids(corpus, ivfpq):
    queries = corpus[[3, 1500, 3999]]
    scores, ids = search_ivfpq_exact(ivfpq, corpus, queries, 5, ivfpq.nlist, 64)
    assert ids[:, 0].tolist() == [3, 1500, 3999]  # ids are row numbers: each finds itself
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, corpus[ids]), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()
    assert ivfpq.ntotal == len(corpus)


def test_whole_corpus_training_beats_the_first_2048_rows_when_the_data_drifts(corpus, ivfpq):
    dim = corpus.shape[1]
    first = faiss.IndexIVFPQ(
        faiss.IndexFlatIP(dim), dim, ivfpq.nlist, ivfpq.pq.M, 8, faiss.METRIC_INNER_PRODUCT
    )
    first.cp.min_points_per_centroid = first.pq.cp.min_points_per_centroid = 1
    first.train(corpus[:2048])  # what the old index did: train on the rows seen first
    first.add_with_ids(corpus, np.arange(len(corpus), dtype=np.int64))
    rows = tuning.held_out(len(corpus), 200, 0)
    whole_recall = naive_recall(rescored(ivfpq, corpus, corpus[rows], 4, 44), corpus, rows)
    first_recall = naive_recall(rescored(first, corpus, corpus[rows], 4, 44), corpus, rows)
    assert whole_recall > first_recall + 0.1, (whole_recall, first_recall)
    # Tuned, the drifted one needs more lists probed or more rows re-scored for the same target.
    cost = {name: tune(index, corpus) for name, index in (("whole", ivfpq), ("first", first))}
    assert cost["whole"]["nprobe"] * cost["whole"]["shortlist"] < (
        cost["first"]["nprobe"] * cost["first"]["shortlist"]
    )


def test_an_unreachable_target_is_reported_not_hidden(corpus):
    hnsw = new_hnsw(corpus.shape[1], M=4)
    hnsw.add_with_ids(corpus[:500], np.arange(500, dtype=np.int64))
    tuned = tune(hnsw, corpus, target=1.01, sample=50)
    assert tuned["reached"] is False and tuned["ef_search"] >= 500 and tuned["recall_queries"] == 50
    assert tuned["prefer_exact"] is True
    easy = tune(hnsw, corpus, target=0.0, sample=50)  # efSearch 16 · 8 links < 500 rows
    assert easy["reached"] and easy["ef_search"] == 16 and easy["prefer_exact"] is False
    small = new_hnsw(corpus.shape[1], M=32)  # 16 · 64 links > 500 rows: a scan reads less
    small.add_with_ids(corpus[:500], np.arange(500, dtype=np.int64))
    assert tune(small, corpus, target=0.0, sample=50)["prefer_exact"] is True
    ivf = tune(build_ivfpq(corpus[:500], nlist=4), corpus, target=1.01, sample=50)
    assert ivf["reached"] is False and ivf["nprobe"] == 4 and ivf["prefer_exact"] is True


def test_ivfpq_refuses_an_m_that_does_not_divide_the_dimension(corpus):
    with pytest.raises(IndexUriError, match="m=5 must divide the dimension 32"):
        build_ivfpq(corpus, m=5)


def test_choose_kind_picks_flat_then_hnsw_then_ivfpq():
    kind, reason = choose_kind(100_000, 384)
    assert kind == "flat" and "recall 1.0" in reason
    kind, reason = choose_kind(1_000_000, 384)
    assert kind == "hnsw" and "no memory budget" in reason and "0.95" in reason
    need = tuning.hnsw_bytes(1_000_000, 384)
    assert need > 1_000_000 * 384 * 4  # the graph adds to the vectors
    assert choose_kind(1_000_000, 384, need)[0] == "hnsw"
    kind, reason = choose_kind(1_000_000, 384, need - 1)
    assert kind == "ivfpq" and "0.95" in reason and "budget" in reason
    # The exact-scan limit is in bytes: more rows stay flat at a lower dimension.
    assert choose_kind(8_000_000, 8)[0] == "flat" and choose_kind(9_000_000, 8)[0] == "hnsw"
    flat_rows = tuning.FLAT_MAX_BYTES // (384 * 4)
    assert choose_kind(flat_rows, 384)[0] == "flat" and choose_kind(flat_rows + 1, 384)[0] == "hnsw"


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq", "flat"])
def test_search_params_with_a_selector_return_only_allowed_ids(corpus, ivfpq, kind):
    if kind == "hnsw":
        index = new_hnsw(corpus.shape[1])
        index.add_with_ids(corpus, np.arange(len(corpus), dtype=np.int64))
    else:
        index = ivfpq if kind == "ivfpq" else faiss.IndexFlatIP(corpus.shape[1])
        if kind == "flat":
            index.add(corpus)
    allowed = np.arange(0, len(corpus), 7, dtype=np.int64)
    params = search_params(index, ef_search=64, nprobe=16, selector=faiss.IDSelectorBatch(allowed))
    if kind == "hnsw":
        assert isinstance(params, faiss.SearchParametersHNSW) and params.efSearch == 64
    if kind == "ivfpq":
        assert isinstance(params, faiss.SearchParametersIVF) and params.nprobe == 16
    _, ids = index.search(corpus[:20], 10, params=params)
    assert set(ids[ids >= 0].tolist()) <= set(allowed.tolist()) and (ids >= 0).sum() >= 150
    if kind == "ivfpq":
        _, ids = search_ivfpq_exact(
            index, corpus, corpus[:20], 10, 16, 40, faiss.IDSelectorBatch(allowed)
        )
        assert set(ids[ids >= 0].tolist()) <= set(allowed.tolist())


def test_search_tuned_searches_as_tune_measured(corpus, ivfpq):
    tuned = tune(ivfpq, corpus)
    rows = tuning.held_out(len(corpus), 200, 0)
    _, ids = tuning.search_tuned(
        ivfpq, corpus, corpus[rows], 11, nprobe=tuned["nprobe"], shortlist=tuned["shortlist"]
    )
    assert naive_recall(ids, corpus, rows) == pytest.approx(tuned["recall_at_10"], abs=1e-12)
    hnsw = new_hnsw(corpus.shape[1])
    hnsw.add_with_ids(corpus, np.arange(len(corpus), dtype=np.int64))
    scores, ids = tuning.search_tuned(hnsw, corpus, corpus[:5], 3, ef_search=32)
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", corpus[:5], corpus[ids]), atol=1e-5)


def test_tuning_on_given_queries_covers_queries_unlike_the_corpus(corpus, ivfpq):
    """Queries around other centres (as another modality's would be) need more lists probed."""
    others = clustered(n=300, seed=1)
    own = tune(ivfpq, corpus)
    given = tune(ivfpq, corpus, queries=others, sample=100)
    assert given["reached"] and given["recall_queries"] == 100
    assert given["nprobe"] > own["nprobe"]
    chosen = others[tuning.held_out(300, 100, 0)]
    found = rescored(ivfpq, corpus, chosen, given["nprobe"], given["shortlist"], k=10)
    truth = np.argsort(-(chosen @ corpus.T), axis=1)[:, :10]
    expected = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert given["recall_at_10"] == pytest.approx(expected, abs=1e-12)
    assert given["recall_at_10"] >= 0.95
