"""Compaction: the log and its scan copy rewritten without deleted rows as a new generation,
committed by one SQLite commit; results unchanged, files smaller, kills at every stage safe."""

import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from jointspace.index import compaction, open_index
from jointspace.index.catalog import Catalog
from jointspace.index.compaction import CompactedError

COPY = {"fp32": (None, 0), "fp16": ("vectors.f16", 2), "int8": ("codes.i8", 1)}
FILTERS = [None, 'label == "1"', 'split == "a" and meta_x != 3']


def clustered(n, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, d))[rng.integers(0, 40, n)] + 0.5 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def metadata(r):
    return {"label": str(r % 3), "split": "ab"[r % 2], "meta_x": r % 7}


def build(uri, x, gone=()):
    index = open_index(uri, dim=x.shape[1], mode="w")
    for start in range(0, len(x), 1000):
        rows = range(start, min(start + 1000, len(x)))
        index.add([f"i{r}" for r in rows], x[rows.start : rows.stop], [metadata(r) for r in rows])
        index.save()
    for start in range(0, len(gone), 100):  # deleted in several calls
        index.delete([f"i{r}" for r in gone[start : start + 100]])
    return index


def results(index, q):
    out = []
    for text in FILTERS:
        for row in index.search(q, k=10, filter=text):
            out.append([(h.id, h.score, h.metadata) for h in row])
    return out


def assert_same(got, want):
    assert [[(i, m) for i, _, m in row] for row in got] == [
        [(i, m) for i, _, m in row] for row in want
    ]
    np.testing.assert_allclose(
        [[s for _, s, _ in row] for row in got], [[s for _, s, _ in row] for row in want], atol=1e-6
    )


def stored(index):
    """Each id's vector as the log holds it now."""
    keys = dict(index.catalog.db.execute("SELECT id, key FROM items"))
    return {i: index.log.view()[k] for i, k in keys.items()}


@pytest.mark.parametrize(
    ("kind", "storage"), [("flat", "fp32"), ("flat", "fp16"), ("flat", "int8"), ("hnsw", "int8")]
)
def test_compaction_keeps_results_and_shrinks_the_files(tmp_path, kind, storage):
    x, folder = clustered(3000, 16, 0), tmp_path / "i"
    q = x[np.random.default_rng(1).choice(3000, 20, replace=False)] + 0.05
    gone = np.random.default_rng(2).permutation(3000)[:1200]
    index = build(f"faiss://{folder}?kind={kind}&storage={storage}", x, gone)
    live = np.setdiff1d(np.arange(3000), gone)
    before = (
        results(index, q) if kind == "flat" else results(index, q)[20:]
    )  # hnsw: filtered = exact
    name, width = COPY[storage]
    assert (folder / "vectors.f32").stat().st_size == 3000 * 16 * 4
    assert index.compact() == 1200 and index.compact() == 0
    after = results(index, q) if kind == "flat" else results(index, q)[20:]
    assert_same(after, before)
    files = sorted(os.listdir(folder))
    assert (
        "vectors.f32" not in files and (folder / "vectors.g1.f32").stat().st_size == 1800 * 16 * 4
    )
    if name:  # the scan copy shrinks with the log
        stem, suffix = name.split(".")
        assert f"{stem}.g1.{suffix}" in files and name not in files
        assert (folder / f"{stem}.g1.{suffix}").stat().st_size == 1800 * 16 * width
    # Keys renumbered 0..1799 in the old order; each id keeps its vector and metadata.
    keys = dict(index.catalog.db.execute("SELECT id, key FROM items"))
    assert sorted(keys.values()) == list(range(1800))
    assert [keys[f"i{r}"] for r in live] == list(range(1800))
    assert all(np.array_equal(v, x[int(i[1:])]) for i, v in stored(index).items())
    assert index.get(["i5", f"i{gone[0]}"]) == ({"i5": metadata(5)} if 5 in live else {})
    index.add(["new"], x[:1], [{"label": "1", "split": "a", "meta_x": 0}])  # after the last row
    index.close()
    reader = open_index(f"faiss://{folder}")
    assert reader.generation == 1 and len(reader) == 1801 and reader.log.rows == 1801
    assert reader.catalog.by_key([1800]) == {
        1800: ("new", {"label": "1", "split": "a", "meta_x": 0})
    }
    hits = reader.search(x[:1], k=2, filter='label == "1" and meta_x == 0')[0]
    assert hits[0].id == "new" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    if kind == "hnsw":
        assert reader.trained and reader.ann.covers == 1801  # the cache rebuilt for the new rows
    reader.close()


def test_a_writer_close_compacts_once_deletes_pass_a_third(tmp_path):
    x, uri = clustered(3300, 8, 3), f"faiss://{tmp_path / 'i'}"
    build(uri, x, np.arange(1100)).close()  # 1100 of 3300: not past a third
    index = open_index(uri)
    assert index.generation == 0 and index.log.rows == 3300
    index.close()
    writer = open_index(uri, mode="w")
    writer.delete(["i1100"])
    writer.close()
    index = open_index(uri)
    assert index.generation == 1 and index.log.rows == len(index) == 2199
    assert sorted(os.listdir(tmp_path / "i")) == [
        "index.json",
        "index.lock",
        "meta.sqlite",
        "vectors.g1.f32",
    ]
    index.close()


def test_a_reader_opened_before_a_compaction_is_refused_in_one_line(tmp_path, monkeypatch):
    x, uri = clustered(2400, 8, 4), f"faiss://{tmp_path / 'i'}"
    writer = build(uri, x, np.arange(0, 2400, 2))
    writer.save()
    reader = open_index(uri)
    q = x[1:4]
    want = [[h.id for h in row] for row in reader.search(q, k=5)]
    stale = Catalog(tmp_path / "i" / "meta.sqlite", writable=False)
    old = stale.snapshot()  # what a reader opening just before the commit reads
    stale.close()
    writer.close()  # compacts: 1200 of 2400 deleted
    with pytest.raises(CompactedError, match=r"compacted by a writer .* open it again$"):
        reader.search(q, k=5)
    assert reader.get(["i1"]) == {"i1": metadata(1)}  # by id: still answered
    reader.close()
    # A reader whose snapshot names the removed generation reads SQLite again.
    calls = []
    snapshot = Catalog.snapshot

    def stale_first(self):
        calls.append(1)
        return old if len(calls) == 1 else snapshot(self)

    monkeypatch.setattr(Catalog, "snapshot", stale_first)
    fresh = open_index(uri)
    assert len(calls) == 2 and fresh.generation == 1
    assert [[h.id for h in row] for row in fresh.search(q, k=5)] == want
    fresh.close()


KILLED = """
import os, sys
from jointspace.index import compaction, open_index
from jointspace.index.catalog import Catalog
uri, stage = sys.argv[1:]
def die(*args, **kwargs):
    os._exit(9)
index = open_index(uri, mode="w")
if stage == "writing":  # the new log half written
    compaction.BLOCK = 500
    append = compaction.VectorLog.append
    def once(self, rows):
        append(self, rows)
        die()
    compaction.VectorLog.append = once
elif stage == "files-written":  # fsynced, before any SQLite change
    Catalog.renumber = die
elif stage == "in-transaction":  # keys renumbered, the commit not yet made
    Catalog.commit = die
elif stage == "committed":  # before the old files are removed
    compaction.remove_stale = die
index.compact()
"""


@pytest.mark.parametrize(
    ("stage", "generation", "kind"),
    [
        ("writing", 0, "flat"),
        ("files-written", 0, "flat"),
        ("in-transaction", 0, "flat"),
        ("committed", 1, "flat"),
        ("in-transaction", 0, "hnsw"),
        ("committed", 1, "hnsw"),
    ],
)
def test_a_killed_compaction_leaves_an_index_with_every_vector(
    tmp_path, monkeypatch, stage, generation, kind
):
    x, folder = clustered(2000, 16, 5), tmp_path / "i"
    uri = f"faiss://{folder}?storage=int8&kind={kind}"
    gone = np.arange(0, 2000, 3)
    monkeypatch.setattr(compaction, "MINIMUM", 10**9)  # closed with its tombstones
    build(uri, x, gone).close()
    reader = open_index(f"faiss://{folder}")
    q = x[:20] + 0.05
    exact = slice(None) if kind == "flat" else slice(20, None)  # hnsw: filtered rows are exact
    want = results(reader, q)[exact]
    reader.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    died = subprocess.run(
        [sys.executable, "-c", KILLED, f"faiss://{folder}", stage], env=env, capture_output=True
    )
    assert died.returncode == 9, died.stderr.decode()
    # Both generations' files are there: the old ones not yet removed, the new ones not yet
    # (or no longer) needed.
    files = set(os.listdir(folder))
    assert {"vectors.f32", "codes.i8", "vectors.g1.f32", "codes.g1.i8"} <= files
    # The graph numbers the old rows: gone once the commit is near, rebuilt on open.
    assert ("hnsw.faiss" in files) == (kind == "hnsw" and stage in ("writing", "files-written"))
    reader = open_index(f"faiss://{folder}")
    assert reader.generation == generation and len(reader) == 2000 - len(gone)
    assert all(np.array_equal(v, x[int(i[1:])]) for i, v in stored(reader).items())
    assert set(stored(reader)) == {f"i{r}" for r in np.setdiff1d(np.arange(2000), gone)}
    assert_same(results(reader, q)[exact], want)
    if kind == "hnsw":
        assert reader.ann.covers == reader.log.rows
    reader.close()
    writer = open_index(f"faiss://{folder}", mode="w")  # removes what the killed one left
    names = {0: ["codes.i8", "vectors.f32"], 1: ["codes.g1.i8", "vectors.g1.f32"]}[generation]
    assert sorted(n for n in os.listdir(folder) if n.startswith(("codes", "vectors"))) == names
    writer.compact()
    writer.close()
    reader = open_index(f"faiss://{folder}")
    assert reader.log.rows == len(reader) == 2000 - len(gone) == reader.copy.rows
    assert_same(results(reader, q)[exact], want)
    reader.close()


def test_the_cli_compacts(tmp_path):
    from jointspace.cli.main import app

    x, uri = clustered(500, 8, 6), f"faiss://{tmp_path / 'i'}"
    build(uri, x, np.arange(100)).close()  # under the minimum: left for the command
    assert open_index(uri).log.rows == 500
    done = CliRunner().invoke(app, ["index", "compact", uri])
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split())
    assert "100 deleted rows removed" in said and "holds 400 items" in said
    index = open_index(uri)
    assert index.log.rows == len(index) == 400 and index.generation == 1
    index.close()
    refused = CliRunner().invoke(app, ["index", "compact", f"faiss://{tmp_path / 'none'}"])
    assert refused.exit_code != 0 and "no index at" in refused.output
