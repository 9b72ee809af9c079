"""Format 2: the append-only log scales (bytes written linear in N), resumes after a kill, and
filters are typed columns whose results equal brute force over the filtered rows."""

import json
import os
import sqlite3
import subprocess
import sys

import faiss
import numpy as np
import pytest

from jointspace.errors import InputError
from jointspace.index import faiss_ann, faiss_backend, open_index


def unit(n, d, seed):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, d))[rng.integers(0, 40, n)] + 0.5 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def written() -> int:
    """Bytes this process has passed to write(2) so far."""
    with open("/proc/self/io") as file:
        return int(dict(line.split(": ") for line in file.read().splitlines())["wchar"])


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_a_build_writes_bytes_linear_in_its_size(tmp_path, kind):
    def build(n):
        before = written()
        index = open_index(f"faiss://{tmp_path / str(n)}?kind={kind}", dim=8, mode="w")
        vectors = unit(n, 8, n)
        for start in range(0, n, 25):  # a save after every small batch: the worst case
            rows = range(start, start + 25)
            index.add([f"i{r}" for r in rows], vectors[start : start + 25], [{"label": "a"}] * 25)
            index.save()
        index.close()
        return written() - before

    small, large = build(600), build(2400)
    # A save that rewrote the index would make this 16 (4x the saves, each 4x larger).
    assert 3.0 < large / small < 5.0, (small, large)


KILLED_BUILD = """
import os, sys, numpy as np
from jointspace.index import faiss_backend, open_index
uri, point = sys.argv[1:]
saves = []
if point == "inside-save":  # the third commit never happens
    commit = faiss_backend.FaissIndex._commit
    def die_on_third(self, chunk):
        saves.append(1)
        if len(saves) == 3:
            os._exit(9)
        commit(self, chunk)
    faiss_backend.FaissIndex._commit = die_on_third
index = open_index(uri, dim=8, mode="w")
x = np.random.default_rng(0).normal(size=(1000, 8)).astype("float32")
for b in range(10):
    rows = range(100 * b, 100 * b + 100)
    meta = [{"label": str(r % 3)} for r in rows]
    index.add([f"r{r}" for r in rows], x[rows.start : rows.stop], meta)
    if point == "between-saves" and b == 6:
        os._exit(9)  # batch 7 added, not saved
    if b % 2 == 1:
        index.save()
index.close()
"""


@pytest.mark.parametrize(("point", "kept"), [("between-saves", 600), ("inside-save", 400)])
def test_a_killed_build_resumes_with_nothing_lost_or_duplicated(tmp_path, point, kept):
    uri = f"faiss://{tmp_path / 'i'}?kind=hnsw"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    died = subprocess.run([sys.executable, "-c", KILLED_BUILD, uri, point], env=env)
    assert died.returncode == 9
    partial = open_index(uri)
    assert len(partial) == partial.log.rows == kept
    partial.close()
    x = np.random.default_rng(0).normal(size=(1000, 8)).astype(np.float32)
    index = open_index(uri, mode="w")
    for b in range(10):  # what `index build` does: ask per batch which ids are there
        ids = [f"r{r}" for r in range(100 * b, 100 * b + 100)]
        todo = [i for i in ids if i not in index.present(ids)]
        rows = [int(i[1:]) for i in todo]
        index.add(todo, x[rows], [{"label": str(r % 3)} for r in rows])
        index.save()
    index.close()
    index = open_index(uri)
    assert index.ids() == {f"r{r}" for r in range(1000)}
    assert len(index) == index.log.rows == 1000  # no vector twice
    keys = dict(index.catalog.db.execute("SELECT id, key FROM items"))
    stored = index.log.view()[[keys[f"r{r}"] for r in range(1000)]]
    assert np.array_equal(stored, x)  # each id holds its own vector, bit for bit
    assert index.get(["r5"]) == {"r5": {"label": "2"}}
    index.close()


def brute_force(vectors, queries, allowed, k):
    scores = queries @ vectors[allowed].T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return allowed[order], np.take_along_axis(scores, order, axis=1)


@pytest.fixture(scope="module", params=["flat", "hnsw", "ivfpq"])
def corpus(request, tmp_path_factory):
    """3000 clustered 16-d vectors; labels 0-9, splits 0/1, and rows 0-199 deleted."""
    folder = tmp_path_factory.mktemp("corpus") / "i"
    uri = f"faiss://{folder}?kind={request.param}&train_min=1000"
    vectors = clustered(3000, 16, 0)
    meta = [{"label": str(i % 10), "split": str(i % 2), "meta_x": i % 7} for i in range(3000)]
    index = open_index(uri, dim=16, mode="w")
    for start in range(0, 3000, 500):
        rows = range(start, start + 500)
        index.add([str(r) for r in rows], vectors[start : start + 500], meta[start : start + 500])
        index.save()
    index.delete([str(r) for r in range(200)])
    index.close()  # ivfpq trains here, on the whole corpus
    index = open_index(f"faiss://{folder}")
    assert index.trained == (request.param != "flat")
    yield request.param, index, vectors, meta
    index.close()


FILTERS = {
    'label == "3"': lambda m: m["label"] == "3",
    'label in ["1", "2"] and meta_x != 4': lambda m: m["label"] in "12" and m["meta_x"] != 4,
    'split == "1" or meta_x == 0': lambda m: m["split"] == "1" or m["meta_x"] == 0,
}


@pytest.mark.parametrize("text", FILTERS)
def test_small_filtered_subsets_equal_brute_force_for_every_kind(corpus, text):
    _, index, vectors, meta = corpus
    allowed = np.array([i for i in range(200, 3000) if FILTERS[text](meta[i])])
    queries = clustered(20, 16, 1)
    expected, scores = brute_force(vectors, queries, allowed, 10)
    hits = index.search(queries, k=10, filter=text)  # ANN kinds: exact over the small subset
    assert [[int(h.id) for h in row] for row in hits] == expected.tolist()
    np.testing.assert_allclose([[h.score for h in row] for row in hits], scores, atol=1e-5)


def test_large_filtered_subsets_keep_their_recall(corpus, monkeypatch):
    kind, index, vectors, meta = corpus
    monkeypatch.setattr(faiss_backend, "EXACT_SUBSET", 100)  # 1400 rows: the selector path
    index._filters.clear()
    allowed = np.array([i for i in range(200, 3000) if meta[i]["split"] == "1"])
    queries = vectors[:50] + 0.3 * unit(50, 16, 2)  # near the corpus, as real queries are
    expected, _ = brute_force(vectors, queries, allowed, 10)
    hits = index.search(queries, k=10, filter='split == "1"')
    assert all(meta[int(h.id)]["split"] == "1" and int(h.id) >= 200 for r in hits for h in r)
    found = [len({int(h.id) for h in row} & set(e)) for row, e in zip(hits, expected, strict=True)]
    floor = {"flat": 1.0, "hnsw": 0.9, "ivfpq": 0.7}[kind]  # PQ codes: approximate scores
    assert np.mean(found) / 10 >= floor
    index._filters.clear()


def test_duplicates_are_named_and_the_whole_add_refused(tmp_path):
    index = open_index(f"faiss://{tmp_path / 'i'}", dim=4, mode="w")
    index.add(["a", "b"], unit(2, 4, 0))
    with pytest.raises(InputError, match=r"ids already in the index: \['a', 'b'\]"):
        index.add(["c", "a", "d", "b"], unit(4, 4, 1))
    assert index.ids() == {"a", "b"} and index.log.rows == len(index) == 2
    index.add(["c"], unit(1, 4, 2))
    assert index.catalog.by_key([2]) == {2: ("c", {})}  # the key is the row, never skipped
    index.close()


def test_filter_fields_are_typed_indexed_columns(tmp_path):
    index = open_index(f"faiss://{tmp_path / 'i'}", dim=4, mode="w")
    meta = [{"label": 1, "split": "a", "meta_size": 2.5, "other": "x"}, {"label": "1"}]
    index.add(["n", "s"], unit(2, 4, 0), meta)
    assert index.catalog.columns == {"label", "split", "meta_size"}  # "other": json_extract
    plan = 'EXPLAIN QUERY PLAN SELECT key FROM items WHERE "f_label" = 1'

    def uses_index(db):
        return "INDEX items_f_label" in str(db.execute(plan).fetchall()).replace('"', "")

    assert not uses_index(index.catalog.db)  # deferred: built at the first filter or at close
    query = unit(1, 4, 1)
    assert [h.id for h in index.search(query, filter="label == 1")[0]] == ["n"]
    assert uses_index(index.catalog.db) and index.catalog.indexed
    assert [h.id for h in index.search(query, filter="label == 1")[0]] == ["n"]  # 1 is not "1"
    assert [h.id for h in index.search(query, filter='label == "1"')[0]] == ["s"]
    assert [h.id for h in index.search(query, filter="meta_size == 2.5")[0]] == ["n"]
    assert [h.id for h in index.search(query, filter='other == "x"')[0]] == ["n"]
    # The compiled rows are cached until the next add or delete.
    index.add(["t"], unit(1, 4, 2), [{"label": 1}])
    assert {h.id for h in index.search(query, filter="label == 1")[0]} == {"n", "t"}
    index.delete(["n"])
    assert [h.id for h in index.search(query, filter="label == 1")[0]] == ["t"]
    index.close()


def test_metadata_round_trips_whether_or_not_its_typed_columns_hold_it(tmp_path):
    uri = f"faiss://{tmp_path / 'i'}"
    index = open_index(uri, dim=4, mode="w")
    batches = [  # typed values a column keeps exactly leave the JSON; the rest stay in it
        [{"label": "cat", "split": "train"}, {"label": "dog", "split": "test"}],
        [{"label": 7, "meta_n": 2**70}, {"label": True, "meta_n": None, "x": [1]}],
        [{"label": "a"}, {"split": "val", "meta_tags": ["p", "q"]}],  # a sparse field
    ]
    ids = [f"i{i}" for i in range(6)]
    for start, meta in zip((0, 2, 4), batches, strict=True):
        index.add(ids[start : start + 2], unit(2, 4, start), meta)
    index.close()
    expected = dict(zip(ids, [m for batch in batches for m in batch], strict=True))
    stored = dict(
        sqlite3.connect(tmp_path / "i" / "meta.sqlite").execute("SELECT id, meta FROM items")
    )
    assert stored["i0"] == "{}" and json.loads(stored["i3"])["label"] is True
    reader = open_index(uri)
    assert reader.get(ids) == expected
    hits = reader.search(unit(1, 4, 9), k=6)[0]
    assert {h.id: h.metadata for h in hits} == expected
    assert [h.id for h in reader.search(unit(1, 4, 9), filter='label == "cat"')[0]] == ["i0"]
    assert {h.id for h in reader.search(unit(1, 4, 9), filter="label == 7")[0]} == {"i2"}
    reader.close()


def test_filter_indexes_are_built_once_by_a_writer_and_readers_scan_without_them(tmp_path):
    uri, query = f"faiss://{tmp_path / 'i'}", unit(1, 4, 0)
    index = open_index(uri, dim=4, mode="w")
    index.add(["a", "b", "c"], unit(3, 4, 1), [{"label": 1}, {"label": 2}, {"label": 1}])
    index.save()  # committed without the SQL indexes (as a killed writer leaves them)
    reader = open_index(uri, mode="r")
    assert {h.id for h in reader.search(query, filter="label == 1")[0]} == {"a", "c"}
    assert not reader.catalog.indexed
    reader.close()
    index.close()  # the writer builds them as it closes
    writer = open_index(uri, mode="w")
    assert writer.catalog.indexed  # so a later writer keeps new columns indexed as it adds
    writer.add(["d"], unit(1, 4, 2), [{"split": "x"}])
    sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'items_f_%'"
    names = {r[0] for r in writer.catalog.db.execute(sql)}
    assert names == {"items_f_label", "items_f_split"}
    assert [h.id for h in writer.search(query, filter='split == "x"')[0]] == ["d"]
    writer.close()


def test_hnsw_records_its_tuning_and_takes_overrides(tmp_path, monkeypatch):
    uri = f"faiss://{tmp_path / 'i'}?kind=hnsw"
    vectors = clustered(2000, 16, 3)
    index = open_index(uri, dim=16, mode="w")
    index.add([str(i) for i in range(2000)], vectors)
    index.close()
    reader = open_index(uri)
    assert reader.info["recall_at_10"] >= 0.95 and reader.info["recall_queries"] == 200
    assert reader.info["ef_search"] >= 16
    seen = []
    tuning = faiss_ann.tuning  # whichever module builds and tunes the structures
    params = tuning.search_params
    monkeypatch.setattr(tuning, "search_params", lambda *a, **k: seen.append(k) or params(*a, **k))
    reader.search(vectors[:2], k=5)
    reader.search(vectors[:2], k=5, ef_search=300)
    reader.close()
    with open_index(uri + "&ef_search=77") as opened:
        opened.search(vectors[:2], k=5)
        opened.search(vectors[:2], k=5, ef_search=300)
    efs = [k["ef_search"] for k in seen]
    assert efs == [reader.info["ef_search"], 300, 77, 300]


def test_the_hnsw_cache_is_saved_geometrically_and_caught_up_on_open(tmp_path):
    folder = tmp_path / "i"
    index = open_index(f"faiss://{folder}?kind=hnsw", dim=8, mode="w")
    vectors = unit(250, 8, 4)
    index.add([str(i) for i in range(100)], vectors[:100])
    index.save()  # the first cache: 100 rows
    index.add([str(i) for i in range(100, 150)], vectors[100:150])
    index.save()  # 150 < 2 x 100: the cache file is not rewritten
    assert faiss.read_index(str(folder / "hnsw.faiss")).ntotal == 100
    index.add([str(i) for i in range(150, 250)], vectors[150:])
    index.save()  # 250 >= 200: rewritten
    assert faiss.read_index(str(folder / "hnsw.faiss")).ntotal == 250
    index.add(["late"], unit(1, 8, 5))
    index.save()
    index.discard()  # killed, in effect: no close, so the cache lacks the last row
    reader = open_index(f"faiss://{folder}")
    assert reader.ann.covers == reader.log.rows == 251  # caught up from the log
    assert reader.search(unit(1, 8, 5), k=1)[0][0].id == "late"
    reader.close()


def test_auto_picks_a_structure_at_close_and_records_it(tmp_path, monkeypatch):
    uri = f"faiss://{tmp_path / 'i'}?kind=auto"
    index = open_index(uri, dim=8, mode="w")
    index.add([str(i) for i in range(300)], unit(300, 8, 6))
    index.close()
    small = open_index(uri)
    assert small.info["auto_kind"] == "flat" and small.info["auto_reason"]
    assert not small.trained
    small.close()
    monkeypatch.setattr(faiss_ann.tuning, "choose_kind", lambda n, dim, budget: ("hnsw", "big"))
    writer = open_index(uri, mode="w")
    writer.add(["x"], unit(1, 8, 7))
    writer.close()
    big = open_index(uri)
    assert (
        big.info["auto_kind"] == "hnsw"
        and big.trained
        and (tmp_path / "i" / "hnsw.faiss").is_file()
    )
    assert big.info["recall_at_10"] >= 0.95
    assert big.search(unit(1, 8, 7), k=1)[0][0].id == "x"
    big.close()
