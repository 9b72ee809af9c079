"""Deletes one at a time cost O(1) merges each: tombstones wait in a list and are merged once,
when a search needs them; results stay equal to brute force over the live items."""

import numpy as np

from jointspace.index import faiss_backend, open_index


def unit(n, d, seed):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_deleting_one_at_a_time_merges_once_per_search(tmp_path, monkeypatch):
    x, q = unit(2000, 16, 0), unit(20, 16, 1)
    index = open_index(f"faiss://{tmp_path / 'i'}", dim=16, mode="w")
    index.add([f"i{r}" for r in range(2000)], x, [{"label": str(r % 2)} for r in range(2000)])
    index.save()
    merged = []  # the size of every merge: the work a delete used to do each time
    merge = faiss_backend.merge_dead
    monkeypatch.setattr(
        faiss_backend, "merge_dead", lambda dead, new: merged.append(len(dead)) or merge(dead, new)
    )
    monkeypatch.setattr(np, "union1d", None)  # the old per-delete merge is gone
    gone = np.random.default_rng(2).permutation(2000)[:900]
    for n, row in enumerate(gone):
        assert index.delete([f"i{row}"]) == 1
        assert len(index) == 2000 - n - 1  # counted without a merge
        if n == 400:
            index.save()  # commits the tombstones: no merge either
    assert merged == []
    live = np.setdiff1d(np.arange(2000), gone)
    for _ in range(3):  # one merge, then the merged array serves every later search
        hits = index.search(q, k=10)
    assert merged == [0]
    scores = q @ x[live].T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    assert [[h.id for h in row] for row in hits] == [[f"i{r}" for r in o] for o in live[order]]
    np.testing.assert_allclose(
        [[h.score for h in row] for row in hits], np.take_along_axis(scores, order, 1), atol=1e-5
    )
    assert index.delete([f"i{live[-1]}", f"i{live[0]}", "i-missing"]) == 2
    hits = index.search(q, k=2000, filter='label == "1"')  # a filter excludes deleted rows too
    want = {f"i{r}" for r in live[1:-1] if r % 2 == 1}
    assert {h.id for h in hits[0]} == want and merged == [0]
    index.search(q, k=5)
    assert merged == [0, 900]
    index.close()
    reader = open_index(f"faiss://{tmp_path / 'i'}")
    assert len(reader) == len(live) - 2
    assert np.array_equal(reader.dead, np.sort([*gone, live[-1], live[0]]))
    reader.close()
