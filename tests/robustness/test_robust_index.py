"""Bad filters, damaged index artifacts and bad index URIs: each one clear line, no traceback."""

import json
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from jointspace.cli import app
from jointspace.index import FilterError, open_index
from jointspace.index.build import open_for_model
from jointspace.models.io import model_fingerprint

BAD_FILTERS = [
    "label == 99999999999999999999999",
    "label == -99999999999999999999999",
    "label in [1, 99999999999999999999999]",
    'colour == "red"',
    'label == "1" and colour == "red"',
    "id == 'item-1'",
    "label = '1'",
    "label > 3",
    "label == x",
    '__import__("os").system("true")',
    "label in 'ab'",
    "label == True",
    "label == None",
    "   ",
    "label == 1e999",
    "(" * 300 + 'label == "1"' + ")" * 300,
    'label == "\x00"',
    'label == "1" and',
    "label ==",
    "x" * 5000,
    "label == [1]",
    "label.real == 1",
    'label == -"a"',
    '"1" == label',
    'label == "1" == split',
    'not label == "1"',
    'label in ["1", ["2"]]',
    "lambda: 1",
    'label == b"1"',
    'label == {"a": 1}',
    'label == f"{x}"',
]


def unit(n, seed):
    x = np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module", params=["faiss", "milvus"])
def labelled(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    uri = f"faiss://{root / 'i'}" if request.param == "faiss" else f"milvus://{root / 'i.db'}"
    index = open_index(uri, dim=8, mode="w")
    meta = [{"label": str(i % 3), "split": "test"} for i in range(12)]
    index.add([f"item-{i}" for i in range(12)], unit(12, 0), meta)
    index.save()
    yield index
    index.close()


@pytest.mark.parametrize("text", BAD_FILTERS, ids=range(len(BAD_FILTERS)))
def test_bad_filters_are_one_line_filter_errors(labelled, text):
    with pytest.raises(FilterError) as caught:
        labelled.search(unit(1, 1), k=3, filter=text)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300 and "Traceback" not in message
    if "colour" in text or text.startswith("id"):
        assert "known fields: label, split" in message


@pytest.fixture(scope="module")
def fake_model(tmp_path_factory):
    """Files enough for a fingerprint: every case below fails at the index, before any model."""
    model = tmp_path_factory.mktemp("model")
    (model / "config.json").write_text('{"format": "none"}')
    (model / "model.safetensors").write_bytes(b"weights")
    return model


def built(root, fake_model):
    index = open_for_model(f"faiss://{root}", model_fingerprint(fake_model), dim=8, mode="w")
    index.add([f"item-{i}" for i in range(6)], unit(6, 0), [{"label": "a"}] * 6)
    index.close()
    return root


def rewrite(name, data):
    def damage(root):
        (root / name).write_bytes(data(root / name) if callable(data) else data)

    return damage


def delete(name):
    return lambda root: (root / name).unlink()


def make_dir(name):
    def damage(root):
        (root / name).unlink()
        (root / name).mkdir()

    return damage


def drop_rows(root):
    with sqlite3.connect(root / "meta.sqlite") as db:
        db.execute("DELETE FROM items WHERE key = 2")


def format_1(root):
    # What an index written before format 2 holds: index.faiss, and no "format" in index.json.
    info = json.loads((root / "index.json").read_text())
    del info["format"]
    (root / "index.json").write_text(json.dumps(info))
    (root / "vectors.f32").rename(root / "index.faiss")


def permuted(root):
    other = open_index(f"faiss://{root.parent / 'permuted'}", dim=8, mode="w")
    other.add([f"item-{i}" for i in range(6)], unit(6, 0)[::-1], [{"label": "a"}] * 6)
    other.close()
    shutil.copy(root.parent / "permuted" / "vectors.f32", root / "vectors.f32")


DAMAGE = {
    "missing vectors.f32": delete("vectors.f32"),
    "truncated vectors.f32": rewrite("vectors.f32", lambda p: p.read_bytes()[:40]),
    "empty vectors.f32": rewrite("vectors.f32", b""),
    "garbage vectors.f32": rewrite("vectors.f32", b"\xff" * 4096),
    "permuted vectors.f32": permuted,
    "vectors.f32 is a folder": make_dir("vectors.f32"),
    "missing meta.sqlite": delete("meta.sqlite"),
    "garbage meta.sqlite": rewrite("meta.sqlite", b"garbage " * 512),
    "empty meta.sqlite": rewrite("meta.sqlite", b""),
    "truncated meta.sqlite": rewrite("meta.sqlite", lambda p: p.read_bytes()[:1000]),
    "meta.sqlite is a folder": make_dir("meta.sqlite"),
    "a row deleted from meta.sqlite": drop_rows,
    "broken index.json": rewrite("index.json", b'{"dim": 8,'),
    "index.json holds a list": rewrite("index.json", b"[1, 2]"),
    "index.json without dim": rewrite("index.json", json.dumps({"kind": "flat"}).encode()),
    "binary index.json": rewrite("index.json", b"\xff\xfe\x00"),
    "missing index.json": delete("index.json"),
    "a format-1 index": format_1,
}


def search(model, uri, *extra):
    runner = CliRunner()
    args = ["index", "search", str(model), "--index", uri, "--query", "a seven", *extra]
    return runner.invoke(app, args)


def one_line_error(result, *expected):
    assert result.exit_code == 1, result.output
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(
        result.exception, SystemExit
    )
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for text in expected:
        assert text in result.output, result.output


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_index_artifacts_are_one_line_errors(tmp_path, fake_model, case):
    root = built(tmp_path / "i", fake_model)
    DAMAGE[case](root)
    before = sorted(p.name for p in root.iterdir())
    result = search(fake_model, f"faiss://{root}")
    one_line_error(result, "index faiss://")
    if case != "vectors.f32 is a folder":
        assert "--force" in result.output
    assert sorted(p.name for p in root.iterdir()) == before  # the search wrote nothing


def bad_uris(tmp_path):
    (tmp_path / "a-file").write_text("not an index")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.db").write_text("not a Milvus database")
    return {
        "qdrant://x": "unknown index scheme 'qdrant'",
        "faiss://": "names no folder",
        f"faiss://{tmp_path / 'i'}?kind=bogus": "kind must be one of",
        f"faiss://{tmp_path / 'i'}?nlist=0": "nlist='0' must be a positive integer",
        f"faiss://{tmp_path / 'i'}?nprobe=99999999999999999999": "must be a positive integer",
        f"faiss://{tmp_path / 'i'}?colour=red": "unknown option 'colour'",
        f"faiss://{tmp_path / 'a-file'}": "is a file, not an index folder",
        f"faiss://{tmp_path / 'nowhere'}": "no index at",
        f"faiss://{tmp_path / 'empty'}": "no index at",
        "milvus://127.0.0.1:1": "Milvus failed",
        f"milvus://{tmp_path / 'nowhere' / 'x.db'}": "no index at",
        f"milvus://{tmp_path / 'file.db'}": "is a file, not a Milvus Lite database",
        f"milvus://{tmp_path / 'new.db'}": "no index at",
        "milvus://127.0.0.1:1?collection=x&kind=hnsw": "unknown option 'kind'",
    }


def test_bad_index_uris_are_one_line_errors(tmp_path, fake_model):
    for uri, expected in bad_uris(tmp_path).items():
        one_line_error(search(fake_model, uri), expected)
    assert not (tmp_path / "new.db").exists() and not (tmp_path / "nowhere").exists()


def test_an_unreachable_milvus_server_is_one_line_in_a_real_process(fake_model):
    command = [sys.executable, "-m", "jointspace.cli", "index", "search", str(fake_model)]
    command += ["--index", "milvus://127.0.0.1:1", "--query", "x"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.strip().splitlines() == [
        "error: index milvus://127.0.0.1:1: Milvus failed: Fail connecting to server on "
        "127.0.0.1:1, illegal connection params or server unavailable"
    ]
