import csv
import errno
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import tiny_config
from jointspace.cli import app
from jointspace.data import read_manifest
from jointspace.index import open_index
from jointspace.index.build import ModelMismatchError, build_index, open_for_model
from jointspace.models import load
from jointspace.models.embedding import distinct_items
from jointspace.models.io import model_fingerprint

KILL_AT_BATCH_3 = """
import os, sys
from jointspace.data import read_manifest
from jointspace.index.build import build_index
from jointspace.models.io import model_fingerprint
from jointspace.models import load
from jointspace.models.io import model_fingerprint
run, manifest, uri = sys.argv[1:]
kill = lambda n: os._exit(9) if n == 3 else None
build_index(load(run), model_fingerprint(run), read_manifest(manifest), "image", uri, batch_size=64,
            save_every=2, progress=False, on_batch=kill)
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits_manifest):
    from jointspace.runs.fit import fit

    config = tiny_config(batch_size=256, max_steps=20)
    config.data.val_split = None
    out = tmp_path_factory.mktemp("index-run") / "run"
    fit(config, out, manifest=digits_manifest)
    return out


def test_build_indexes_every_image_with_metadata(run, digits_manifest, tmp_path):
    manifest = read_manifest(digits_manifest)
    model = load(run)
    index = build_index(
        model,
        model_fingerprint(run),
        manifest,
        "image",
        f"faiss://{tmp_path / 'i'}",
        progress=False,
    )
    values, rows = distinct_items(manifest, "image")
    assert index.ids() == {r["id"] for r in rows} and len(index) == len(values)
    query = model.encode(["a handwritten seven"], "text")
    hits = index.search(query, k=5, filter='split == "test"')[0]
    assert len(hits) == 5 and all(h.metadata["split"] == "test" for h in hits)
    assert set(hits[0].metadata) == {"image", "label", "split"}
    assert index.info["manifest"] == str(digits_manifest.resolve())
    brute = model.encode([manifest.resolve(v) for v in values], "image") @ query[0]
    assert hits[0].score <= brute.max() + 1e-5
    index.close()


def test_killed_build_resumes_without_duplicates_or_gaps(run, digits_manifest, tmp_path):
    uri = f"faiss://{tmp_path / 'k'}"
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AT_BATCH_3, str(run), str(digits_manifest), uri],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == 9, killed.stderr
    partial = open_index(uri)
    assert len(partial) == 128  # two batches of 64 were saved; the third died with the process
    partial.close()
    manifest = read_manifest(digits_manifest)
    index = build_index(
        load(run), model_fingerprint(run), manifest, "image", uri, batch_size=64, progress=False
    )
    _, rows = distinct_items(manifest, "image")
    assert index.ids() == {r["id"] for r in rows}
    assert len(index) == len(rows) == index.log.rows  # no vector twice
    index.close()
    # Items and vectors agree with a build that was never interrupted, id by id.
    whole = f"faiss://{tmp_path / 'whole'}"
    build_index(
        load(run), model_fingerprint(run), manifest, "image", whole, batch_size=64, progress=False
    ).close()
    resumed, fresh = open_index(uri), open_index(whole)
    assert resumed.get(sorted(resumed.ids())) == fresh.get(sorted(fresh.ids()))
    np.testing.assert_allclose(vectors_by_id(resumed), vectors_by_id(fresh), atol=1e-5)
    resumed.close()
    fresh.close()


def vectors_by_id(index):
    """Each id's stored vector, in id order (its key is its row in the vector log)."""
    keys = dict(index.catalog.db.execute("SELECT id, key FROM items"))
    return np.stack([index.log.view()[keys[i]] for i in sorted(keys)])


def test_an_index_refuses_another_model(run, tmp_path):
    uri = f"faiss://{tmp_path / 'm'}"
    open_for_model(uri, "aaaa", dim=4, mode="w").close()
    with pytest.raises(
        ModelMismatchError, match=r"built by model aaaa, not by this model \(bbbb\)"
    ):
        open_for_model(uri, "bbbb")
    assert np.isfinite(open_for_model(uri, "aaaa").dim)


def test_index_commands_build_search_and_refuse_bad_filters(run, digits_manifest, tmp_path):
    uri = f"milvus://{tmp_path / 'i.db'}"
    # Built by another process, as a user would: on main every later search then failed with
    # "Collection … is in state 'released'" as a traceback.
    command = [sys.executable, "-m", "jointspace.cli", "index", "build", str(run)]
    command += ["--data", str(digits_manifest), "--index", uri]
    built = subprocess.run(command, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert "Traceback" not in built.stderr
    runner = CliRunner()
    args = ["index", "search", str(run), "--index", uri, "--query", "the digit 3", "--k", "3"]
    found = runner.invoke(app, [*args, "--filter", 'split == "val"'])
    assert found.exit_code == 0, found.output
    assert found.output.count("split=val") == 3
    bad = runner.invoke(app, [*args, "--filter", "split = 'val'"])
    assert bad.exit_code == 1 and "error: filter" in bad.output and "Traceback" not in bad.output
    unknown = runner.invoke(app, [*args, "--filter", 'colour == "red"'])
    assert unknown.exit_code == 1 and "unknown field colour; known fields: image, label, split" in (
        unknown.output
    )


def small_manifest(digits_manifest, path, images, edit=None):
    """The first ``images`` digits (three rows each), image paths made absolute."""
    with open(digits_manifest) as file:
        rows = list(csv.DictReader(file))[: 3 * images]
    for row in rows:
        row["image"] = str(digits_manifest.parent / row["image"])
    if edit:
        edit(rows)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def build(run, manifest, uri, *extra):
    args = ["index", "build", str(run), "--data", str(manifest), "--index", uri, *extra]
    return CliRunner().invoke(app, args)


def one_line_error(result, *expected):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    # A progress bar may come first; then exactly one error line ends the output.
    assert lines[-1].startswith("error: ") and result.output.count("error") == 1, result.output
    for text in expected:
        assert text in lines[-1], result.output


def test_build_names_the_row_with_an_empty_id(run, digits_manifest, tmp_path):
    def blank(rows):
        rows[6]["id"] = ""  # the first row of the third image: the one indexed

    manifest = small_manifest(digits_manifest, tmp_path / "m.csv", 4, blank)
    result = build(run, manifest, f"faiss://{tmp_path / 'i'}")
    # `index build` validates the manifest first, like every command: the row is named there.
    one_line_error(result, "m.csv, row 7, column 'id': empty id; to skip bad rows")
    assert not (tmp_path / "i").exists()  # refused before anything was written


def test_ids_with_slashes_round_trip_through_a_build(run, digits_manifest, tmp_path):
    def nest(rows):
        for row in rows:
            row["id"] = f"digits/{row['split']}/{row['id']}"

    manifest = small_manifest(digits_manifest, tmp_path / "m.csv", 5, nest)
    uri = f"faiss://{tmp_path / 'i'}"
    assert build(run, manifest, uri).exit_code == 0
    index = open_index(uri)
    assert len(index) == 5 and all(
        i.startswith("digits/") and i.count("/") == 2 for i in index.ids()
    )
    some = sorted(index.ids())[0]
    assert index.get([some])[some]["image"].endswith(".png")
    model = load(run)
    hits = index.search(model.encode(["a handwritten 0"], "text"), k=5)[0]
    assert {h.id for h in hits} == index.ids()
    index.close()


def test_build_refuses_a_folder_of_other_files_unless_forced(run, digits_manifest, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    manifest = small_manifest(digits_manifest, tmp_path / "m.csv", 4)
    one_line_error(build(run, manifest, f"faiss://{folder}"), "is not a jointspace index")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]  # refused: nothing changed
    assert build(run, manifest, f"faiss://{folder}", "--force").exit_code == 0
    assert (folder / "notes.txt").read_text() == "my notes"
    assert len(open_index(f"faiss://{folder}")) == 4


def test_build_on_a_damaged_index_refuses_then_force_rebuilds(run, digits_manifest, tmp_path):
    manifest = small_manifest(digits_manifest, tmp_path / "m.csv", 6)
    uri = f"faiss://{tmp_path / 'i'}"
    assert build(run, manifest, uri).exit_code == 0
    (tmp_path / "i" / "vectors.f32").unlink()  # on main: silently empty, never repaired
    one_line_error(build(run, manifest, uri), "vectors.f32 is missing", "--force")
    assert not (tmp_path / "i" / "vectors.f32").exists()
    assert build(run, manifest, uri, "--force").exit_code == 0
    index = open_index(uri)
    assert len(index) == index.log.rows == 6
    index.close()


def test_a_second_build_is_refused_while_one_writes(run, digits_manifest, tmp_path):
    manifest = small_manifest(digits_manifest, tmp_path / "m.csv", 4)
    uri = f"faiss://{tmp_path / 'i'}"
    assert build(run, manifest, uri).exit_code == 0
    holder = open_index(uri, mode="w")
    try:
        one_line_error(
            build(run, manifest, uri), f"being written by another process (pid {os.getpid()})"
        )
    finally:
        holder.close()


def test_a_full_disk_during_build_keeps_the_previous_index(
    run, digits_manifest, tmp_path, monkeypatch
):
    from jointspace.index import vector_log

    uri = f"faiss://{tmp_path / 'i'}"
    assert build(run, small_manifest(digits_manifest, tmp_path / "a.csv", 5), uri).exit_code == 0
    more = small_manifest(digits_manifest, tmp_path / "b.csv", 12)

    def full(file, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(vector_log, "_write", full)
    one_line_error(build(run, more, uri), "no space left on device writing", "vectors.f32")
    monkeypatch.undo()
    index = open_index(uri)
    assert len(index) == index.log.rows == 5  # the previous index, intact and searchable
    assert len(index.search(load(run).encode(["a seven"], "text"), k=3)[0]) == 3
    index.close()
    assert build(run, more, uri).exit_code == 0  # space freed: the rerun completes
    assert len(open_index(uri)) == 12


def test_an_approximate_index_is_tuned_on_the_paired_modality(run, digits_manifest, tmp_path):
    manifest = read_manifest(digits_manifest)
    uri = f"faiss://{tmp_path / 'h'}?kind=hnsw"
    build_index(
        load(run), model_fingerprint(run), manifest, "image", uri, batch_size=64, progress=False
    ).close()
    captions, _ = distinct_items(manifest, "text")
    index = open_index(uri)
    recorded = index.info["tuning_queries"]
    assert recorded == {
        "source": "text",
        "manifest": str(manifest.path),
        "count": min(200, len(captions)),
    }
    assert index.info["recall_queries"] == recorded["count"]
    index.close()
    flat = f"faiss://{tmp_path / 'f'}"  # an exact index tunes nothing: no queries embedded
    build_index(
        load(run), model_fingerprint(run), manifest, "image", flat, batch_size=64, progress=False
    ).close()
    with open_index(flat) as exact:
        assert "tuning_queries" not in exact.info


def test_a_build_logged_to_a_file_shows_progress_lines(run, digits_manifest, tmp_path, caplog):
    """Not a terminal (a log file, CI): plain progress lines instead of a bar."""
    manifest = read_manifest(digits_manifest)
    total = len(distinct_items(manifest, "image")[0])
    with caplog.at_level("INFO", logger="jointspace"):
        build_index(
            load(run), model_fingerprint(run), manifest, "image", f"faiss://{tmp_path / 'i'}"
        )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("index: ")]
    assert len(lines) >= 2 and lines[-1] == f"index: {total}/{total}"
