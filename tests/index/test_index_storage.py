"""storage=fp16|int8: an append-only scan copy beside the fp32 log, committed with it; exact
search over the copy re-scored in fp32 equals fp32 top-k; a killed writer leaves it consistent."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jointspace.index import faiss_ann, open_index, tuning
from jointspace.index.errors import IndexUriError
from jointspace.index.scan import top_k

COPY = {"fp16": ("vectors.f16", 2), "int8": ("codes.i8", 1)}


def clustered(n, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, d))[rng.integers(0, 40, n)] + 0.5 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def near(x, n, seed):
    """Queries close to corpus rows (as a search's usually are)."""
    rng = np.random.default_rng(seed)
    q = x[rng.choice(len(x), n, replace=False)] + 0.1 * rng.normal(size=(n, x.shape[1]))
    return q.astype(np.float32)


def build(folder, storage, x, every=500):
    index = open_index(f"faiss://{folder}?storage={storage}", dim=x.shape[1], mode="w")
    for start in range(0, len(x), every):
        rows = range(start, min(start + every, len(x)))
        index.add(
            [f"i{r}" for r in rows],
            x[rows.start : rows.stop],
            [{"label": str(r % 3)} for r in rows],
        )
        index.save()
    return index


def found(hits):
    return np.array([[int(h.id[1:]) for h in row] for row in hits])


@pytest.mark.parametrize("storage", ["fp16", "int8"])
def test_search_over_the_copy_equals_fp32_top_k_and_reopens(tmp_path, storage):
    x = clustered(3000, 32, 0)
    q = near(x, 100, 1)
    build(tmp_path / "i", storage, x).close()
    name, width = COPY[storage]
    assert (tmp_path / "i" / name).stat().st_size == 3000 * 32 * width  # same rows as the log
    info = json.loads((tmp_path / "i" / "index.json").read_text())
    assert info["storage"]["name"] == storage
    if storage == "int8":  # fitted on the first rows added: their per-dimension range
        assert np.allclose(info["storage"]["low"], x[:500].min(axis=0), atol=1e-6)
    reader = open_index(f"faiss://{tmp_path / 'i'}")  # reopened: the storage from index.json
    assert reader.copy is not None and reader.copy.name == storage
    scores, truth = top_k(x, q, 10)
    hits = reader.search(q, k=10)
    np.testing.assert_array_equal(found(hits), truth)
    np.testing.assert_allclose([[h.score for h in row] for row in hits], scores, atol=1e-5)
    subset = np.flatnonzero(np.arange(3000) % 3 == 1)  # a filter scans the copy's subset
    _, sub_truth = top_k(x, q, 5, rows=subset)
    np.testing.assert_array_equal(found(reader.search(q, k=5, filter='label == "1"')), sub_truth)
    reader.close()


def test_storage_is_fixed_when_built_and_checked_on_open(tmp_path):
    build(tmp_path / "i", "int8", clustered(100, 8, 0)).close()
    with pytest.raises(IndexUriError, match=r"built with storage=int8, not fp16.*--force"):
        open_index(f"faiss://{tmp_path / 'i'}?storage=fp16")
    open_index(f"faiss://{tmp_path / 'i'}?storage=int8").close()
    plain = build(tmp_path / "p", "fp32", clustered(100, 8, 0))
    assert plain.copy is None and "storage" not in plain.info
    plain.close()
    assert not (tmp_path / "p" / "vectors.f16").exists()


DIE_BEFORE_COMMIT = """
import os, sys, numpy as np
from jointspace.index import faiss_backend, open_index
faiss_backend.FaissIndex._commit = lambda *a: os._exit(9)
index = open_index(sys.argv[1], mode="w")
x = np.random.default_rng(7).normal(size=(300, 16)).astype("float32")
index.add([f"late-{i}" for i in range(300)], x)
index.save()  # the copy and the log are appended and fsynced; the commit never happens
"""


@pytest.mark.parametrize("storage", ["fp16", "int8"])
def test_a_killed_writer_leaves_the_copy_as_long_as_the_committed_log(tmp_path, storage):
    x = clustered(1000, 16, 2)
    build(tmp_path / "i", storage, x).close()
    uri = f"faiss://{tmp_path / 'i'}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    died = subprocess.run(
        [sys.executable, "-c", DIE_BEFORE_COMMIT, uri], env=env, capture_output=True
    )
    assert died.returncode == 9, died.stderr.decode()
    name, width = COPY[storage]
    path = tmp_path / "i" / name
    assert path.stat().st_size == 1300 * 16 * width  # the killed writer's rows are there…
    q = near(x, 50, 3)
    reader = open_index(uri)  # …and ignored: a reader sees the committed 1000 rows
    assert len(reader) == reader.copy.rows == 1000
    np.testing.assert_array_equal(found(reader.search(q, k=10)), top_k(x, q, 10)[1])
    reader.close()
    writer = open_index(uri, mode="w")  # the next writer cuts both back to the commit
    assert path.stat().st_size == 1000 * 16 * width and writer.log.rows == 1000
    writer.close()


def test_a_lost_copy_is_re_encoded_by_a_writer_and_skipped_by_a_reader(tmp_path):
    x = clustered(1200, 16, 4)
    build(tmp_path / "i", "int8", x).close()
    (tmp_path / "i" / "codes.i8").unlink()
    q = near(x, 40, 5)
    reader = open_index(f"faiss://{tmp_path / 'i'}")
    assert reader.copy is None  # scans the fp32 log: still exact
    np.testing.assert_array_equal(found(reader.search(q, k=10)), top_k(x, q, 10)[1])
    reader.close()
    open_index(f"faiss://{tmp_path / 'i'}", mode="w").close()
    assert (tmp_path / "i" / "codes.i8").stat().st_size == 1200 * 16
    again = open_index(f"faiss://{tmp_path / 'i'}")
    assert again.copy is not None
    np.testing.assert_array_equal(found(again.search(q, k=10)), top_k(x, q, 10)[1])
    again.close()


def test_tuning_queries_are_used_and_recorded(tmp_path, monkeypatch):
    x = clustered(2000, 16, 6)
    other = near(x, 300, 7) + 0.3  # another modality's embeddings: off the corpus's own rows
    seen = []
    tune = tuning.tune
    monkeypatch.setattr(faiss_ann.tuning, "tune", lambda *a, **k: seen.append(k) or tune(*a, **k))
    index = open_index(f"faiss://{tmp_path / 'i'}?kind=hnsw", dim=16, mode="w")
    index.add([str(i) for i in range(2000)], x)
    index.tuning_queries(other, source="text", manifest="m.csv")
    structure = index.ann.structure
    index.close()
    assert seen and seen[0]["queries"] is not None
    np.testing.assert_array_equal(seen[0]["queries"], other)
    info = json.loads((tmp_path / "i" / "index.json").read_text())
    assert info["tuning_queries"] == {"source": "text", "manifest": "m.csv", "count": 200}
    # The recorded recall is the one those queries give at the recorded setting.
    expected = tune(structure, x, queries=other)
    assert info["recall_at_10"] == expected["recall_at_10"]
    assert info["ef_search"] == expected["ef_search"]
    plain = open_index(f"faiss://{tmp_path / 'p'}?kind=hnsw", dim=16, mode="w")
    plain.add([str(i) for i in range(2000)], x)
    plain.close()
    recorded = json.loads((tmp_path / "p" / "index.json").read_text())["tuning_queries"]
    assert recorded == {"source": "corpus", "count": 200}


def test_a_failed_log_append_takes_its_codes_back(tmp_path, monkeypatch):
    from jointspace.errors import DiskFullError
    from jointspace.index import vector_log

    x = clustered(600, 16, 8)
    index = build(tmp_path / "i", "fp16", x[:500])
    write = vector_log._write

    def full_for_the_log(file, data):
        if file.name.endswith("vectors.f32"):
            raise OSError(28, "No space left on device")
        write(file, data)

    monkeypatch.setattr(vector_log, "_write", full_for_the_log)
    with pytest.raises(DiskFullError):
        index.add([f"i{r}" for r in range(500, 600)], x[500:])
    monkeypatch.undo()
    assert index.copy.rows == index.log.rows == 500  # the codes were appended first: cut back
    index.add([f"i{r}" for r in range(500, 600)], x[500:])
    index.close()
    assert (tmp_path / "i" / "vectors.f16").stat().st_size == 600 * 16 * 2
    q = near(x, 30, 9)
    with open_index(f"faiss://{tmp_path / 'i'}") as reader:
        np.testing.assert_array_equal(found(reader.search(q, k=10)), top_k(x, q, 10)[1])
