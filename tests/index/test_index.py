import socket
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from jointspace.index import FilterError, open_index
from jointspace.index.filters import parse_filter, to_milvus, to_sql

BACKENDS = ["faiss", "faiss-hnsw", "faiss-ivfpq", "milvus", "milvus-server"]


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    """A Milvus gRPC server in its own process on a loopback port (Milvus Lite's server mode)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tmp_path_factory.mktemp("milvus-server")
    command = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data)]
    server = subprocess.Popen([*command, "--host", "127.0.0.1", "--port", str(port)])
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("the Milvus server did not start") from None
            time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    server.terminate()
    server.wait(10)


def uri_for(backend, tmp_path, request=None):
    if backend == "milvus-server":  # the network path: host:port, a fresh collection per test
        address = request.getfixturevalue("milvus_server")
        return f"milvus://{address}?collection=c{uuid.uuid4().hex[:12]}"
    return {
        "faiss": f"faiss://{tmp_path / 'idx'}",
        "faiss-hnsw": f"faiss://{tmp_path / 'idx'}?kind=hnsw",
        "faiss-ivfpq": f"faiss://{tmp_path / 'idx'}?kind=ivfpq",  # exact until trained
        "milvus": f"milvus://{tmp_path / 'idx.db'}",
    }[backend]


def unit_vectors(n, d, seed):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(params=BACKENDS)
def filled(request, tmp_path):
    uri = uri_for(request.param, tmp_path, request)
    vectors = unit_vectors(60, 8, 0)
    ids = [f"item-{i}" for i in range(60)]
    meta = [{"label": str(i % 3), "split": ["train", "test"][i % 2]} for i in range(60)]
    index = open_index(uri, dim=8, mode="w", model="m1")
    index.add(ids, vectors, meta)
    index.save()
    yield uri, index, ids, vectors, meta
    index.close()


def brute_force(vectors, ids, query, k, keep=None):
    scores = vectors @ query
    order = [i for i in np.argsort(-scores, kind="stable") if keep is None or keep(i)]
    return [ids[i] for i in order[:k]], scores


def test_search_agrees_with_brute_force(filled):
    _, index, ids, vectors, _ = filled
    queries = unit_vectors(5, 8, 1)
    for query, hits in zip(queries, index.search(queries, k=7), strict=True):
        expected, scores = brute_force(vectors, ids, query, 7)
        assert [h.id for h in hits] == expected
        np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:7], atol=1e-5)


def test_filters_restrict_results(filled):
    _, index, ids, vectors, meta = filled
    query = unit_vectors(1, 8, 2)[0]
    hits = index.search(query, k=5, filter='label == "1" and split in ["test"]')[0]
    keep = lambda i: meta[i]["label"] == "1" and meta[i]["split"] == "test"  # noqa: E731
    assert [h.id for h in hits] == brute_force(vectors, ids, query, 5, keep)[0]
    assert all(h.metadata == {"label": "1", "split": "test"} for h in hits)
    assert index.search(query, k=5, filter='label == "nope"') == [[]]
    hits = index.search(query, k=60, filter='label != "0" or split not in ["train"]')[0]
    assert {h.id for h in hits} == {
        ids[i] for i in range(60) if meta[i]["label"] != "0" or meta[i]["split"] != "train"
    }


def test_filters_refuse_unknown_fields_and_out_of_range_numbers(filled):
    _, index, *_ = filled
    query = unit_vectors(1, 8, 2)
    with pytest.raises(FilterError, match="unknown field colour; known fields: label, split"):
        index.search(query, filter='colour == "red"')  # on main: silently no results
    with pytest.raises(FilterError, match="integer 99999999999999999999999 is out of range"):
        index.search(query, filter="label == 99999999999999999999999")  # on main: a crash
    assert index.search(query, k=3, filter="label == 1") == [[]]  # a number is no string


def test_delete_add_persist_and_reopen(filled):
    uri, index, _, vectors, _ = filled
    assert index.delete(["item-0", "item-1", "missing"]) == 2
    index.add(["new"], unit_vectors(1, 8, 3), [{"label": "x"}])
    with pytest.raises(ValueError, match="already in the index"):
        index.add(["item-5"], unit_vectors(1, 8, 4))
    index.close()
    again = open_index(uri)
    assert again.info["model"] == "m1" and again.dim == 8
    assert (
        len(again) == 59
        and "item-0" not in again.ids()
        and again.get(["new"])["new"] == {"label": "x"}
    )
    top = again.search(vectors[0], k=3)[0]
    assert "item-0" not in [h.id for h in top]
    assert again.search(vectors[7], k=1)[0][0].id == "item-7"
    again.close()


def test_bad_inputs_are_clear(filled, tmp_path):
    _, index, *_ = filled
    with pytest.raises(ValueError, match=r"vectors must be \[n, 8\]"):
        index.add(["a"], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.search(np.zeros(8), k=0)
    with pytest.raises(ValueError, match="have 8 dimensions"):
        index.search(np.zeros(3))
    with pytest.raises(FilterError, match="use field == value"):
        index.search(np.zeros(8), filter="__import__('os')")


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no index at .*none: build one with"):
        open_index(str(tmp_path / "none"))
    with pytest.raises(FileNotFoundError, match=r"no index at .*none: build one with"):
        open_index(str(tmp_path / "none"), mode="w")
    assert not (tmp_path / "none").exists()  # neither created anything
    with pytest.raises(ValueError, match="unknown index scheme 'qdrant'"):
        open_index("qdrant://x")


def test_filter_language_compiles_to_sql_and_milvus():
    expr = parse_filter('label == "7" and (split in ["a", "b"] or score != 3)')
    sql, params = to_sql(expr)
    assert params == ["7", "a", "b", 3]
    assert sql.startswith("(json_extract(meta, '$.label') = ?) AND ")
    typed, same = to_sql(expr, typed={"label", "split"})  # their own indexed columns
    assert typed.startswith('("f_label" = ?) AND (("f_split" IN (?, ?)) OR (json_extract(')
    assert same == params
    assert to_milvus(expr) == '(label == "7") and ((split in ["a", "b"]) or (score != 3))'
    for bad in ("label > 3", "f(x) == 1", "label == x", "label in 'a'", "label == True", "1 == 1"):
        with pytest.raises(FilterError):
            parse_filter(bad)


def clustered(n, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, d))[rng.integers(0, 40, n)] + 0.5 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_ivfpq_trains_at_close_on_the_whole_corpus_and_keeps_recall(tmp_path):
    uri = f"faiss://{tmp_path / 'i'}?kind=ivfpq&train_min=1200"
    vectors, ids = clustered(3000, 32, 0), [str(i) for i in range(3000)]
    index = open_index(uri, dim=32, mode="w")
    index.add(ids[:1000], vectors[:1000], [{"odd": str(i % 2)} for i in range(1000)])
    index.close()
    index = open_index(uri, mode="w")
    assert not index.trained  # still exact below train_min
    index.add(ids[1000:], vectors[1000:], [{"odd": str(i % 2)} for i in range(1000, 3000)])
    assert not index.trained  # exact until the writer closes
    index.close()
    index = open_index(uri, mode="w")
    info = index.info
    assert index.trained and info["trained_rows"] == 3000 and len(index) == 3000
    assert 32 % info["m"] == 0 and 1 <= info["nprobe"] <= info["nlist"] <= 3000 // 39
    assert info["recall_queries"] == 200 and 0 < info["recall_at_10"] <= 1
    # Queries near the corpus, like those the build tuned on (tuning.tune(queries=) otherwise).
    noise = 0.1 * np.random.default_rng(1).normal(size=(100, 32)).astype(np.float32)
    queries = vectors[::30] + noise
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    hits = index.search(queries, k=10)
    found = [{int(h.id) for h in row} & set(t) for row, t in zip(hits, truth, strict=True)]
    recall = np.mean([len(f) / 10 for f in found])
    assert recall >= 0.9  # the build tuned for 0.95 on its own sample
    odd = index.search(queries, k=10, filter='odd == "1"')
    assert all(int(h.id) % 2 == 1 for row in odd for h in row) and len(odd[0]) == 10
    assert index.delete(ids[:500]) == 500
    index.close()
    again = open_index(f"faiss://{tmp_path / 'i'}?nprobe=40")
    assert again.trained and again.settings["nprobe"] == 40 and len(again) == 2500
    hits = again.search(queries, k=10)
    assert all(int(h.id) >= 500 for row in hits for h in row) and len(hits[0]) == 10
    again.close()


def test_index_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="nlist='x' must be a positive integer"):
        open_index(f"faiss://{tmp_path / 'i'}?kind=ivfpq&nlist=x", dim=4, mode="w")
    with pytest.raises(ValueError, match="kind must be one of"):
        open_index(f"faiss://{tmp_path / 'i'}?kind=ivf", dim=4, mode="w")
