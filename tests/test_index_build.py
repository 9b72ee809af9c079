import subprocess
import sys

import numpy as np
import pytest

from conftest import tiny_config
from jointspace.data import read_manifest
from jointspace.embed import unique_items
from jointspace.index import open_index
from jointspace.index.build import ModelMismatchError, build_index, open_for_model
from jointspace.models import load

KILL_AT_BATCH_3 = """
import os, sys
from jointspace.data import read_manifest
from jointspace.index.build import build_index
from jointspace.models import load
run, manifest, uri = sys.argv[1:]
kill = lambda n: os._exit(9) if n == 3 else None
build_index(load(run), run, read_manifest(manifest), "image", uri, batch_size=64,
            save_every=2, progress=False, on_batch=kill)
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits_manifest):
    from jointspace.pipeline import fit

    config = tiny_config(batch_size=256, max_steps=20)
    config.data.val_split = None
    out = tmp_path_factory.mktemp("index-run") / "run"
    fit(config, out, manifest=digits_manifest)
    return out


def test_build_indexes_every_image_with_metadata(run, digits_manifest, tmp_path):
    manifest = read_manifest(digits_manifest)
    model = load(run)
    index = build_index(model, run, manifest, "image", f"faiss://{tmp_path / 'i'}", progress=False)
    values, rows = unique_items(manifest, "image")
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
    index = build_index(load(run), run, manifest, "image", uri, batch_size=64, progress=False)
    _, rows = unique_items(manifest, "image")
    assert index.ids() == {r["id"] for r in rows}
    assert len(index) == len(rows) == index.index.ntotal  # no vector twice
    index.close()


def test_an_index_refuses_another_model(run, tmp_path):
    uri = f"faiss://{tmp_path / 'm'}"
    open_for_model(uri, "aaaa", dim=4, mode="w").close()
    with pytest.raises(
        ModelMismatchError, match=r"built by model aaaa, not by this model \(bbbb\)"
    ):
        open_for_model(uri, "bbbb")
    assert np.isfinite(open_for_model(uri, "aaaa").dim)


def test_index_commands_build_search_and_refuse_bad_filters(run, digits_manifest, tmp_path):
    from typer.testing import CliRunner

    from jointspace.cli import app

    runner = CliRunner()
    uri = f"milvus://{tmp_path / 'i.db'}"
    built = runner.invoke(
        app, ["index", "build", str(run), "--data", str(digits_manifest), "--index", uri]
    )
    assert built.exit_code == 0, built.output
    args = ["index", "search", str(run), "--index", uri, "--query", "the digit 3", "--k", "3"]
    found = runner.invoke(app, [*args, "--filter", 'split == "val"'])
    assert found.exit_code == 0, found.output
    assert found.output.count("split=val") == 3
    bad = runner.invoke(app, [*args, "--filter", "split = 'val'"])
    assert bad.exit_code == 1 and "error: filter" in bad.output and "Traceback" not in bad.output
