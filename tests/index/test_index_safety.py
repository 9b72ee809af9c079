"""Readers never write, writers lock, and damaged or mismatched files are refused on open."""

import errno
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import zlib

import numpy as np
import pytest
import xxhash

from jointspace.errors import ArtifactError, DiskFullError
from jointspace.index import open_index
from jointspace.index.errors import (
    DamagedIndexError,
    IndexLockedError,
    ReadOnlyIndexError,
)

# A second process that adds 20 items to an existing index and saves; or holds the lock.
ADD_20 = """
import sys, numpy as np
from jointspace.index import open_index
index = open_index(sys.argv[1], mode="w")
x = np.random.default_rng(7).normal(size=(20, 8)).astype("float32")
index.add([f"late-{i}" for i in range(20)], x, [{"label": "late"}] * 20)
index.close()
"""
HOLD = """
import sys, time
from jointspace.index import open_index
index = open_index(sys.argv[1], mode="w")
print("holding", flush=True)
time.sleep(60)
"""
# Die (kill -9) at one point of a save: before the SQLite commit (the rows are already appended
# to vectors.f32), or right after it (before the derived caches are written).
DIE_IN_SAVE = """
import os, sys, numpy as np
from jointspace.index import faiss_backend, open_index
uri, point = sys.argv[1:]
die = lambda *a, **k: os._exit(9)
if point == "before-commit":
    faiss_backend.FaissIndex._commit = die
else:
    faiss_backend.FaissIndex._after_commit = die
index = open_index(uri, mode="w")
x = np.random.default_rng(7).normal(size=(20, 8)).astype("float32")
index.add([f"late-{i}" for i in range(20)], x, [{"label": "late"}] * 20)
index.save()
"""


def vectors(n, seed):
    x = np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make(path, n=10, kind="flat", seed=0):
    uri = f"faiss://{path}?kind={kind}"
    index = open_index(uri, dim=8, mode="w")
    labels = [{"label": str(i % 2)} for i in range(n)]
    index.add([f"item-{i}" for i in range(n)], vectors(n, seed), labels)
    index.close()
    return f"faiss://{path}"


def snapshot(folder, lock=True):
    """Every file's bytes and modification time: what a reader must leave untouched."""
    files = [p for p in sorted(folder.iterdir()) if lock or p.name != "index.lock"]
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def run(script, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_a_stale_reader_never_overwrites_a_concurrent_build(tmp_path, kind):
    uri = make(tmp_path / "i", kind=kind)
    reader = open_index(uri)  # opened before the build below finishes, as `serve` would be
    assert len(reader) == 10
    done = run(ADD_20, uri)
    assert done.returncode == 0, done.stderr.decode()
    reader.close()  # on main this saved its stale copy: 10 vectors left for 30 rows
    again = open_index(uri)
    assert len(again) == 30 and again.log.rows == 30
    assert {h.id for h in again.search(vectors(1, 3), k=30)[0]} == again.ids()
    again.close()


def test_a_reader_cannot_change_the_index_and_a_writer_saves_only_changes(tmp_path):
    uri = make(tmp_path / "i")
    before = snapshot(tmp_path / "i")
    reader = open_index(uri)
    with pytest.raises(ReadOnlyIndexError, match=r"opened for reading: .*mode='w'"):
        reader.add(["x"], vectors(1, 1))
    with pytest.raises(ReadOnlyIndexError):
        reader.delete(["item-1"])
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # SQLite refuses too
        reader.catalog.db.execute("DELETE FROM items")
    reader.search(vectors(1, 2), k=3, filter='label == "1"')
    reader.close()
    assert snapshot(tmp_path / "i") == before
    open_index(uri, mode="w").close()  # a writer that changed nothing: only its lock's pid
    assert snapshot(tmp_path / "i", lock=False) == {
        k: v for k, v in before.items() if k != "index.lock"
    }


def test_a_second_writer_gets_one_clear_error_naming_the_holder(tmp_path):
    uri = make(tmp_path / "i")
    first = open_index(uri, mode="w")
    held = rf"index {uri} is being written .*pid {os.getpid()}"
    with pytest.raises(IndexLockedError, match=held):
        open_index(uri, mode="w")
    open_index(uri).close()  # readers are never locked out
    first.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, uri], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(IndexLockedError, match=rf"pid {holder.pid}\): wait for it"):
            open_index(uri, mode="w")
    finally:
        holder.kill()
        holder.wait()
    open_index(uri, mode="w").close()  # the lock died with its process


def damage_missing_vectors(folder):
    (folder / "vectors.f32").unlink()


def damage_truncated_vectors(folder):
    data = (folder / "vectors.f32").read_bytes()
    (folder / "vectors.f32").write_bytes(data[: len(data) // 2])


def damage_permuted_vectors(folder):
    # The same vectors in another order: a log of the right length, wrong for every id.
    other = folder.parent / "other"
    index = open_index(f"faiss://{other}", dim=8, mode="w")
    index.add([f"item-{i}" for i in range(10)], vectors(10, 0)[::-1], [{}] * 10)
    index.close()
    shutil.copy(other / "vectors.f32", folder / "vectors.f32")


def damage_missing_meta(folder):
    (folder / "meta.sqlite").unlink()


def damage_garbage_meta(folder):
    (folder / "meta.sqlite").write_bytes(b"not a database at all" * 100)


def damage_deleted_rows(folder):
    with sqlite3.connect(folder / "meta.sqlite") as db:
        db.execute("DELETE FROM items WHERE key < 3")  # keys are rows: 0, 1, 2


def damage_broken_info(folder):
    (folder / "index.json").write_text('{"dim": 8, "kind": ')


def damage_missing_info(folder):
    (folder / "index.json").unlink()


DAMAGE = {
    "missing vectors.f32": (damage_missing_vectors, r"vectors\.f32 is missing"),
    "truncated vectors.f32": (damage_truncated_vectors, r"vectors\.f32 does not match meta"),
    "permuted vectors.f32": (damage_permuted_vectors, r"vectors\.f32 does not match meta"),
    "missing meta.sqlite": (damage_missing_meta, r"meta\.sqlite is missing"),
    "garbage meta.sqlite": (damage_garbage_meta, r"meta\.sqlite cannot be read"),
    "rows deleted": (damage_deleted_rows, r"lists 7 items but recorded 10"),
    "broken index.json": (damage_broken_info, r"index\.json is not valid JSON \(.* line 1"),
    "missing index.json": (damage_missing_info, r"index\.json is missing"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_files_are_refused_and_never_rewritten(tmp_path, case):
    damage, message = DAMAGE[case]
    uri = make(tmp_path / "i")
    damage(tmp_path / "i")
    before = snapshot(tmp_path / "i", lock=False)
    for mode in ("r", "w"):
        with pytest.raises(ArtifactError, match=message) as caught:
            open_index(uri, mode=mode)
        assert isinstance(caught.value, DamagedIndexError)
        assert "--force" in str(caught.value) and "\n" not in str(caught.value)
    assert snapshot(tmp_path / "i", lock=False) == before  # the refused writer only locked
    # The repair the message names: rebuild from scratch.
    index = open_index(uri, dim=8, mode="w", force=True)
    assert len(index) == 0
    index.add(["a"], vectors(1, 3))
    index.close()
    assert open_index(uri).ids() == {"a"}


@pytest.mark.parametrize("point", ["before-commit", "after-commit"])
def test_kill_during_save_leaves_a_consistent_index(tmp_path, point):
    uri = make(tmp_path / "i")
    log = tmp_path / "i" / "vectors.f32"
    died = run(DIE_IN_SAVE, uri, point)
    assert died.returncode == 9, died.stderr.decode()
    assert log.stat().st_size == 30 * 8 * 4  # the 20 new rows were appended either way
    # Before the commit the save never happened (its rows are ignored); after it, it did.
    expected = 10 if point == "before-commit" else 30
    reader = open_index(uri)
    assert len(reader) == reader.log.rows == expected
    assert {h.id for h in reader.search(vectors(1, 3), k=40)[0]} == reader.ids()
    reader.close()
    assert log.stat().st_size == 30 * 8 * 4  # a reader changes nothing
    writer = open_index(uri, mode="w")
    assert log.stat().st_size == expected * 8 * 4  # a writer cuts off the uncommitted rows
    missing = [f"late-{i}" for i in range(20) if f"late-{i}" not in writer.ids()]
    writer.add(missing, vectors(len(missing), 5), [{}] * len(missing))
    writer.close()
    final = open_index(uri)
    assert len(final) == final.log.rows == 30 and log.stat().st_size == 30 * 8 * 4
    mine = 'label in ["0", "1"]'  # the 10 first items' (the late ones are not unit vectors)
    assert final.search(vectors(10, 0)[4], k=1, filter=mine)[0][0].id == "item-4"


def test_a_full_disk_while_writing_is_one_line_and_keeps_the_previous_index(tmp_path, monkeypatch):
    from jointspace.index import vector_log

    uri = make(tmp_path / "i")
    writer = open_index(uri, mode="w")
    writer.add([f"new-{i}" for i in range(5)], vectors(5, 4), [{}] * 5)

    def full(file, data):
        file.write(data[: len(data) // 2])  # half of it made it to disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(vector_log, "_write", full)
    with pytest.raises(DiskFullError, match=r"no space left on device writing .*vectors\.f32"):
        writer.add([f"more-{i}" for i in range(5)], vectors(5, 5), [{}] * 5)
    monkeypatch.undo()
    assert "more-0" not in writer.ids() and len(writer) == 15  # that add left nothing behind
    writer.discard()  # as a build does on an error: the unsaved adds are dropped too
    assert not [p for p in (tmp_path / "i").iterdir() if p.name.endswith(".tmp")]
    again = open_index(uri)
    assert len(again) == again.log.rows == 10 and "new-0" not in again.ids()
    assert again.search(vectors(10, 0)[3], k=1)[0][0].id == "item-3"
    again.close()


def test_a_read_only_folder_can_be_searched(tmp_path):
    uri = make(tmp_path / "i")
    folder = tmp_path / "i"
    before = snapshot(folder)
    modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
    for path in modes:
        path.chmod(stat.S_IMODE(modes[path]) & ~0o222)
    try:
        index = open_index(uri)
        hits = index.search(vectors(10, 0)[:2], k=1, filter='label in ["0", "1"]')
        assert [h[0].id for h in hits] == ["item-0", "item-1"]
        index.close()
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    # Root ignores permissions: the folder being unchanged is what proves nothing was written.
    assert snapshot(folder) == before


def test_ids_with_slashes_round_trip(tmp_path):
    ids = ["a/b.png", "dir/sub/c d.png", "../e.png"]
    index = open_index(f"faiss://{tmp_path / 'i'}", dim=8, mode="w")
    index.add(ids, vectors(3, 0), [{"image": i} for i in ids])
    index.close()
    again = open_index(f"faiss://{tmp_path / 'i'}")
    assert again.ids() == set(ids) and again.get(["a/b.png"]) == {"a/b.png": {"image": "a/b.png"}}
    assert [again.search(v, k=1)[0][0].id for v in vectors(3, 0)] == ids


def test_a_format_1_folder_is_refused_in_one_line_saying_how_to_rebuild(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "index.json").write_text(json.dumps({"dim": 8, "kind": "flat", "backend": "faiss"}))
    (folder / "index.faiss").write_bytes(b"an old FAISS file")
    with sqlite3.connect(folder / "meta.sqlite") as db:
        db.execute("CREATE TABLE items (key INTEGER PRIMARY KEY, id TEXT UNIQUE, meta TEXT)")
        db.execute("INSERT INTO items (id, meta) VALUES ('a', '{}')")
    before = snapshot(folder)
    uri = f"faiss://{folder}"
    for mode in ("r", "w"):
        with pytest.raises(ArtifactError, match=r"old format 1 \(index\.faiss\).*--force") as err:
            open_index(uri, mode=mode)
        assert "\n" not in str(err.value)
    assert snapshot(folder, lock=False) == {k: v for k, v in before.items() if k != "index.lock"}
    index = open_index(uri, dim=8, mode="w", force=True)  # the rebuild the message names
    index.add(["b"], vectors(1, 0))
    index.close()
    assert not (folder / "index.faiss").exists() and open_index(uri).ids() == {"b"}


SPILL_AND_DIE = """
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA cache_size = 10")  # spill uncommitted pages into the file: a hot journal
db.executemany("INSERT INTO items (id, meta) VALUES (?, '{}')", [(f"x{i}",) for i in range(5000)])
os._exit(9)
"""


def test_an_interrupted_sqlite_commit_is_one_line_and_a_writer_recovers_it(tmp_path):
    uri = make(tmp_path / "i")
    died = run(SPILL_AND_DIE, str(tmp_path / "i" / "meta.sqlite"))
    assert died.returncode == 9 and (tmp_path / "i" / "meta.sqlite-journal").exists()
    with pytest.raises(ArtifactError, match="unfinished commit of a killed writer; rerun"):
        open_index(uri)
    open_index(uri, mode="w").close()  # SQLite rolls the journal back for a writer
    assert len(open_index(uri)) == 10


def test_a_writer_removes_the_temp_files_a_killed_writer_left(tmp_path):
    uri = make(tmp_path / "i")
    left = [tmp_path / "i" / ".hnsw.faiss.k1ll3d.tmp", tmp_path / "i" / ".index.json.x.tmp"]
    for path in left:
        path.write_bytes(b"half a file")
    open_index(uri).close()
    assert all(path.exists() for path in left)  # a reader touches nothing
    open_index(uri, mode="w").close()
    assert not any(path.exists() for path in left) and len(open_index(uri)) == 10


@pytest.mark.parametrize("older", ["crc32", "sha256"])
def test_chunks_recorded_by_older_writers_are_still_checked(tmp_path, older):
    uri, folder = make(tmp_path / "i"), tmp_path / "i"
    data = (folder / "vectors.f32").read_bytes()
    with sqlite3.connect(folder / "meta.sqlite") as db:
        assert db.execute("SELECT sha256 FROM chunks").fetchall() == [
            (f"xxh3:{xxhash.xxh3_64(data).hexdigest()}",)
        ]

    def record(payload: bytes) -> str:
        if older == "crc32":
            return f"crc32:{zlib.crc32(payload):08x}"
        return hashlib.sha256(payload).hexdigest()

    with sqlite3.connect(folder / "meta.sqlite") as db:
        db.execute("UPDATE chunks SET sha256 = ?", (record(data),))
    assert len(open_index(uri)) == 10  # an old folder's checksum matches: it opens
    with sqlite3.connect(folder / "meta.sqlite") as db:
        db.execute("UPDATE chunks SET sha256 = ?", (record(data[:-1]),))
    with pytest.raises(DamagedIndexError, match=r"checksum of rows 0-9 differs"):
        open_index(uri)
