"""Search settings reach the index: URI options (validated), CLI flags, service fields, Milvus."""

import inspect

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from jointspace.cli.main import app as cli
from jointspace.index import IndexUriError, open_index
from jointspace.index.backends import parse_memory


@pytest.fixture
def spy(monkeypatch):
    """Record the search settings each FaissIndex.search gets, and still search.

    Passes them on when FaissIndex takes them (the v2 back-end does), so after that merge this
    checks the whole path; before it, it checks that the shells hand them over.
    """
    from jointspace.index.faiss_backend import FaissIndex

    original = FaissIndex.search
    takes = "ef_search" in inspect.signature(original).parameters
    calls = []

    def search(self, queries, k=10, filter=None, **knobs):
        calls.append(knobs)
        return original(self, queries, k, filter, **(knobs if takes else {}))

    monkeypatch.setattr(FaissIndex, "search", search)
    return calls


def test_memory_budgets_parse_in_binary_units():
    assert parse_memory("4GB", "u") == 4 * 2**30
    assert parse_memory("512MB", "u") == 512 * 2**20
    assert parse_memory("1.5g", "u") == 3 * 2**29
    assert parse_memory("2GiB", "u") == 2 * 2**30 and parse_memory("4096", "u") == 4096
    for bad in ("", "GB", "4XB", "-1GB", "0", "0.0MB", "1.5", "4 GB GB", "nan"):
        with pytest.raises(IndexUriError, match="must be a size such as 4GB"):
            parse_memory(bad, "u")


def test_uri_options_are_validated_and_passed_to_the_index(tmp_path, monkeypatch):
    from jointspace.index import faiss_backend

    opened = {}

    class Fake:
        def __init__(self, path, dim, kind, **kwargs):
            opened.update(kwargs, kind=kind)

    monkeypatch.setattr(faiss_backend, "FaissIndex", Fake)
    uri = f"faiss://{tmp_path / 'i'}?kind=auto&memory=512MB&ef_search=64&nprobe=8&storage=int8"
    open_index(uri, dim=8, mode="w")
    assert {k: opened[k] for k in ("kind", "memory", "ef_search", "nprobe", "storage")} == {
        "kind": "auto",
        "memory": 512 * 2**20,
        "ef_search": 64,
        "nprobe": 8,
        "storage": "int8",
    }
    bad = {
        "kind=auto&memory=lots": "memory='lots' must be a size such as 4GB",
        "kind=hnsw&memory=4GB": "memory= is the budget of kind=auto",
        "storage=fp64": "storage='fp64' must be one of ('fp32', 'fp16', 'int8')",
        "ef_search=0": "ef_search='0' must be a positive integer",
        "nprobe=x": "nprobe='x' must be a positive integer",
        "kind=annoy": "kind must be one of ('flat', 'hnsw', 'ivfpq', 'auto')",
    }
    for query, message in bad.items():
        with pytest.raises(IndexUriError, match=message.replace("(", r"\(").replace(")", r"\)")):
            open_index(f"faiss://{tmp_path / 'i'}?{query}", dim=8, mode="w")


def test_index_search_passes_ef_search_and_nprobe(served_app, spy):
    app, _ = served_app
    args = ["index", "search", str(app.state.model_dir), "--index", app.state.index_uri]
    args += ["--query", "a seven", "--k", "3"]
    plain = CliRunner().invoke(cli, args)
    tuned = CliRunner().invoke(cli, [*args, "--ef-search", "64", "--nprobe", "8"])
    assert plain.exit_code == 0 and tuned.exit_code == 0, plain.output + tuned.output
    assert spy == [{}, {"ef_search": 64, "nprobe": 8}]  # unset: the index's tuned values
    assert tuned.output == plain.output  # a flat index is exact whatever the settings
    for flag in ("--ef-search", "--nprobe"):
        refused = CliRunner().invoke(cli, [*args, flag, "0"])
        assert refused.exit_code == 2 and "Invalid value" in refused.output


def test_the_service_takes_ef_search_and_nprobe_and_refuses_bad_ones(served_app, spy):
    app, _ = served_app
    with TestClient(app) as client:
        plain = client.post("/search", data={"text": "a seven", "k": "3"})
        form = client.post("/search", data={"text": "a seven", "k": "3", "ef_search": "64"})
        body = {"text": "a seven", "k": 3, "nprobe": 8, "ef_search": 32}
        sent = client.post("/search", json=body)
        assert plain.status_code == form.status_code == sent.status_code == 200, sent.text
        assert spy == [{}, {"ef_search": 64}, {"ef_search": 32, "nprobe": 8}]
        assert form.json()["results"] == plain.json()["results"] == sent.json()["results"]
        for field, value in [("ef_search", "0"), ("nprobe", "-1"), ("nprobe", "many")]:
            refused = client.post("/search", data={"text": "a seven", field: value})
            assert refused.status_code == 422 and field in refused.text
        huge = client.post("/search", json={"text": "a seven", "ef_search": 10**6})
        assert huge.status_code == 422 and "ef_search" in huge.text
    assert len(spy) == 3  # nothing refused reached the index


def test_milvus_accepts_the_settings_with_the_same_results(tmp_path):
    index = open_index(f"milvus://{tmp_path / 'm.db'}", dim=8, mode="w")
    try:
        x = np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)  # unit vectors: each is its own best match
        index.add([f"i{i}" for i in range(20)], x)
        plain = index.search(x[:3], k=4)
        tuned = index.search(x[:3], k=4, ef_search=2, nprobe=8)  # FLAT: nothing to tune
        assert [[h.id for h in q] for q in tuned] == [[h.id for h in q] for q in plain]
        assert [q[0].id for q in plain] == ["i0", "i1", "i2"]
    finally:
        index.close()
