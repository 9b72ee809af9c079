"""``jointspace embed``: the file records how it was made, and defaults to the run's own data."""

import fcntl
import os
import shutil

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import jointspace
from conftest import tiny_config
from jointspace.cli import app
from jointspace.data import read_manifest
from jointspace.models.io import model_fingerprint
from jointspace.runs.export import parts_dir, read_embedding_metadata

runner = CliRunner()


@pytest.fixture(scope="module")
def embed_run(tmp_path_factory, digits_manifest):
    """A digits run trained for two steps (its config.yaml records the manifest)."""
    from jointspace.runs.fit import fit

    root = tmp_path_factory.mktemp("embed")
    config = tiny_config(batch_size=64, max_steps=2)
    config.data.val_split = None
    fit(config, root / "run", manifest=digits_manifest)
    return root / "run"


def distinct(manifest, modality, split):
    rows = read_manifest(manifest).split(split).rows
    return list(dict.fromkeys(row[modality] for row in rows))


def embed(*args):
    result = runner.invoke(app, ["embed", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def test_metadata_is_read_back_with_pyarrow(embed_run, digits_manifest, tmp_path):
    out = tmp_path / "e.parquet"
    embed(
        embed_run, "--data", digits_manifest, "--modality", "text", "--split", "test", "--out", out
    )
    raw = pq.read_metadata(out).metadata  # plain pyarrow: the file's key-value metadata
    assert raw[b"jointspace.model_fingerprint"].decode() == model_fingerprint(embed_run / "model")
    assert raw[b"jointspace.split"] == b"test" and raw[b"jointspace.modality"] == b"text"
    assert raw[b"jointspace.source"].decode() == str(digits_manifest.resolve())
    assert raw[b"jointspace.data"].decode() == str(digits_manifest)
    assert raw[b"jointspace.version"].decode() == jointspace.__version__
    assert raw[b"jointspace.model"].decode() == str((embed_run / "model").resolve())
    assert raw[b"jointspace.embed_dim"] == b"64"
    assert read_embedding_metadata(out) == {
        k.decode(): v.decode() for k, v in raw.items() if k.startswith(b"jointspace.")
    }
    texts = pq.read_table(out).column("text").to_pylist()
    assert sorted(texts) == sorted(distinct(digits_manifest, "text", "test"))


def test_without_data_it_embeds_the_runs_own_manifest(embed_run, digits_manifest, tmp_path):
    own, given = tmp_path / "own.parquet", tmp_path / "given.parquet"
    embed(embed_run, "--split", "test", "--out", own)
    embed(embed_run, "--split", "test", "--out", given, "--data", digits_manifest)
    table = pq.read_table(own)
    assert table.num_rows > 0 and table.equals(pq.read_table(given))
    recorded = read_embedding_metadata(own)
    assert recorded["jointspace.data"] == str(digits_manifest.resolve())  # the run's record
    assert recorded["jointspace.source"] == read_embedding_metadata(given)["jointspace.source"]
    assert recorded["jointspace.split"] == "test"


def test_a_killed_exports_temp_files_are_cleared_on_rerun(embed_run, digits_manifest, tmp_path):
    out = tmp_path / "e.parquet"
    parts = parts_dir(out)
    parts.mkdir()
    stale = [tmp_path / ".e.parquet.abcdefgh.tmp", parts / ".part-000000.parquet.zyxwvuts.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    other = tmp_path / ".other.parquet.abcdefgh.tmp"  # another output's: not ours to remove
    other.write_bytes(b"x")
    embed(embed_run, "--split", "test", "--out", out, "--batch-size", "16")
    assert not any(path.exists() for path in stale) and other.exists()
    assert not parts.exists()
    assert pq.read_table(out).num_rows == len(distinct(digits_manifest, "image", "test"))


def test_a_second_writer_of_the_same_output_is_refused(embed_run, tmp_path):
    out = tmp_path / "e.parquet"
    parts = parts_dir(out)
    parts.mkdir()
    fd = os.open(parts / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running embed holds it
        result = runner.invoke(app, ["embed", str(embed_run), "--out", str(out)])
    finally:
        os.close(fd)
    assert result.exit_code == 1 and "being written by another `jointspace embed`" in result.output
    assert not out.exists()
    shutil.rmtree(parts)
