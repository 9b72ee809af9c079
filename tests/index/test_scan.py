"""index.scan: blocked exact top-k equals brute force; fp16/int8 storages keep their recall."""

import json
import tracemalloc

import numpy as np
import pytest

from jointspace.errors import InputError, JointspaceError
from jointspace.index.errors import IndexMismatchError
from jointspace.index.scan import Storage, storage, top_k


def brute(base, queries, k, rows=None):
    """Float64 scores of every (allowed) row, sorted by score then lower row; padded to k."""
    rows = np.arange(len(base)) if rows is None else np.asarray(rows, np.int64)
    queries = np.atleast_2d(queries)
    scores = queries.astype(np.float64) @ base[rows].astype(np.float64).T
    order = np.lexsort((np.broadcast_to(rows, scores.shape), -scores), axis=1)[:, :k]
    best, found = np.take_along_axis(scores, order, axis=1), rows[order]
    pad = k - best.shape[1]
    best = np.pad(best, ((0, 0), (0, pad)), constant_values=-np.inf)
    return best, np.pad(found, ((0, 0), (0, pad)), constant_values=-1)


def gaussian(n, dim, seed):
    return np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)


def unit(n, dim, seed):
    x = gaussian(n, dim, seed)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n, dim, seed, centres=20):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, dim), dtype=np.float32)
    x = means[rng.integers(centres, size=n)] + 0.3 * rng.standard_normal((n, dim), np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall(found, truth):
    return np.mean(
        [len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth, strict=True)]
    )


@pytest.mark.parametrize("n", [3, 1000, 4099])
@pytest.mark.parametrize("k", [1, 10, 50])
@pytest.mark.parametrize("block", [None, 64, 1000])
def test_top_k_equals_brute_force(n, k, block):
    base, queries = gaussian(n, 24, 0), gaussian(7, 24, 1)
    for q in (queries[:1], queries):
        scores, found = top_k(base, q, k, block=block)
        want_scores, want_rows = brute(base, q, k)
        assert scores.dtype == np.float32 and found.dtype == np.int64
        assert scores.shape == found.shape == (len(q), k)
        np.testing.assert_array_equal(found, want_rows)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block", [4, 5, 1000])
def test_ties_go_to_the_lower_row(block):
    # Three distinct small-integer vectors repeated: every score ties exactly with many others.
    distinct = np.array([[1, 0, 2], [0, 1, 1], [2, 2, 0]], np.float32)
    base = distinct[np.arange(30) % 3]
    scores, found = top_k(base, np.array([[1, 1, 1]], np.float32), 7, block=block)
    # Scores 3, 2, 4 by row % 3: rows 2, 5, … (score 4) by row number, then rows 0, 3 (score 3).
    np.testing.assert_array_equal(found[0], [2, 5, 8, 11, 14, 17, 20])
    assert (scores == 4).all()
    _, found = top_k(base, np.array([[1, 1, 1]], np.float32), 12, block=block)
    np.testing.assert_array_equal(found[0], [*range(2, 30, 3), 0, 3])


@pytest.mark.parametrize("block", [None, 16, 100])
def test_rows_restrict_to_the_subset(block):
    base, queries = gaussian(2000, 16, 2), gaussian(5, 16, 3)
    rng = np.random.default_rng(4)
    subsets = {
        "sparse": np.sort(rng.choice(2000, 20, replace=False)),
        "dense": np.arange(300, 1700),
        "mixed": np.sort(np.r_[np.arange(0, 200), rng.choice(np.arange(200, 2000), 30, False)]),
        "one": np.array([1234]),
    }
    for rows in subsets.values():
        for k in (1, 10, 40):
            scores, found = top_k(base, queries, k, rows=rows, block=block)
            want_scores, want_rows = brute(base, queries, k, rows)
            np.testing.assert_array_equal(found, want_rows)
            np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
            assert np.isin(found[found >= 0], rows).all()


def test_empty_subset_and_fewer_rows_than_k_pad():
    base, queries = gaussian(50, 8, 5), gaussian(2, 8, 6)
    scores, found = top_k(base, queries, 4, rows=np.array([], np.int64))
    assert (found == -1).all() and np.isneginf(scores).all()
    scores, found = top_k(base[:3], queries, 5)
    assert (found[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert sorted(found[0, :3]) == [0, 1, 2]
    scores, found = top_k(np.empty((0, 8), np.float32), queries, 2)
    assert (found == -1).all()
    scores, found = top_k(base, np.empty((0, 8), np.float32), 3)
    assert scores.shape == found.shape == (0, 3)


def test_memory_mapped_base(tmp_path):
    base, queries = gaussian(3000, 32, 7), gaussian(4, 32, 8)
    path = tmp_path / "vectors.f32"
    base.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=base.shape)
    rows = np.arange(0, 3000, 7)
    for q in (queries[:1], queries):
        for subset in (None, rows):
            scores, found = top_k(mapped, q, 10, rows=subset, block=256)
            want_scores, want_rows = brute(base, q, 10, subset)
            np.testing.assert_array_equal(found, want_rows)
            np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_batch_memory_is_per_block_not_q_by_n():
    base, queries = gaussian(200_000, 8, 9), gaussian(50, 8, 10)
    full = 50 * 200_000 * 4  # bytes of the q×N score matrix: 40 MB
    tracemalloc.start()
    try:
        top_k(base, queries, 10, block=2000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < full / 10


@pytest.mark.parametrize(
    ("name", "data", "floor", "error"),
    # Measured (seeded) recall@10 without re-scoring, batch / one query at a time: fp16 1.0 /
    # 0.998 (unit), 1.0 / 0.995 (clustered); int8 0.988 / 0.988 (unit), 0.975 / 0.975
    # (clustered). Largest score error: fp16 1e-4, int8 0.014.
    [
        ("fp16", unit, 0.98, 1e-3),
        ("fp16", clustered, 0.98, 1e-3),
        ("int8", unit, 0.95, 0.03),
        ("int8", clustered, 0.95, 0.03),
    ],
)
def test_quantised_recall_floors(name, data, floor, error):
    base, queries = data(20_000, 64, 11), data(60, 64, 12)
    store = storage(name).fit(base[:2000])
    codes = store.encode(base)
    assert codes.dtype == store.dtype == np.dtype(name.replace("fp", "float"))
    want_scores, want_rows = brute(base, queries, 10)
    scores, found = store.search(codes, queries, 10, block=4096)
    assert recall(found, want_rows) >= floor
    assert np.abs(scores - want_scores).max() < error
    # One query at a time takes another kernel (fp16: torch's half matrix-vector product).
    one = [store.search(codes, q, 10) for q in queries]
    assert recall(np.vstack([f for _, f in one]), want_rows) >= floor
    assert np.abs(np.vstack([s for s, _ in one]) - want_scores).max() < error


@pytest.mark.parametrize("name", ["fp16", "int8"])
def test_rescoring_returns_exact_scores(name):
    base, queries = clustered(5000, 32, 13), clustered(9, 32, 14)
    store = storage(name).fit(base)
    codes = store.encode(base)
    rows = np.arange(0, 5000, 3)
    for subset in (None, rows):
        for q in (queries[:1], queries):
            scores, found = store.search(codes, q, 10, rows=subset, exact=base)
            want_scores, want_rows = brute(base, q, 10, subset)
            np.testing.assert_array_equal(found, want_rows)
            np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    scores, found = store.search(codes[:4], queries, 10, exact=base[:4])
    assert (found[:, 4:] == -1).all() and np.isneginf(scores[:, 4:]).all()


@pytest.mark.parametrize("name", ["fp32", "fp16", "int8"])
def test_storage_round_trips(name):
    base, queries = gaussian(500, 12, 15), gaussian(3, 12, 16)
    store = storage(name).fit(base)
    again = Storage.from_dict(json.loads(json.dumps(store.to_dict())))
    assert again.name == name and again.dtype == store.dtype
    np.testing.assert_array_equal(again.encode(base), store.encode(base))
    codes = store.encode(base)
    for a, b in zip(store.search(codes, queries, 5), again.search(codes, queries, 5), strict=True):
        np.testing.assert_array_equal(a, b)
    if name == "fp32":
        np.testing.assert_array_equal(
            store.search(codes, queries, 5)[1], brute(base, queries, 5)[1]
        )


def test_int8_codes_reconstruct_within_half_a_step():
    base = clustered(1000, 16, 17)
    store = storage("int8").fit(base)
    low, step = np.array(store.to_dict()["low"]), np.array(store.to_dict()["step"])
    decoded = low + step * (store.encode(base).astype(np.float64) + 128)
    assert np.abs(decoded - base).max() <= step.max() / 2 + 1e-6


def test_bad_inputs_raise_jointspace_errors():
    base = gaussian(10, 4, 18)
    with pytest.raises(IndexMismatchError, match="dimension 5"):
        top_k(base, gaussian(1, 5, 0), 3)
    for k in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="k must be"):
            top_k(base, base[:1], k)
    with pytest.raises(InputError, match="sorted"):
        top_k(base, base[:1], 3, rows=np.array([3, 1]))
    with pytest.raises(InputError, match=r"\[0, 10\)"):
        top_k(base, base[:1], 3, rows=np.array([1, 10]))
    with pytest.raises(InputError, match="float32"):
        top_k(base.astype(np.float64), base[:1], 3)
    with pytest.raises(InputError, match="NaN"):
        top_k(base, np.full((1, 4), np.nan, np.float32), 3)
    with pytest.raises(JointspaceError, match="fp32, fp16, int8"):
        storage("pq")
    with pytest.raises(InputError, match="not fitted"):
        storage("int8").encode(base)
    with pytest.raises(InputError, match="unknown scan storage"):
        Storage.from_dict({"name": "int4"})
    store = storage("int8").fit(base)
    with pytest.raises(IndexMismatchError):
        store.search(store.encode(base), gaussian(1, 3, 0), 2)
    with pytest.raises(InputError, match="do not match"):
        store.search(store.encode(base), base[:1], 2, exact=base[:5])
    with pytest.raises(InputError, match="int8"):
        store.search(base, base[:1], 2)
