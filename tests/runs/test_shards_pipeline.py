"""Shards as --data: embed, index build and training give what the manifest gives."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import tiny_config
from jointspace.cli import app
from jointspace.data import ManifestError, PairedDataset, make_collate, read_manifest
from jointspace.data.shard_set import ShardSet
from jointspace.data.shards import write_shards
from jointspace.data.source import ShardSource
from jointspace.evaluate.retrieval import evaluate_model
from jointspace.index import open_index
from jointspace.models import load
from jointspace.models.build import build_model
from jointspace.objectives.base import logit_init
from jointspace.objectives.combined import build_objective
from jointspace.runs.export import embedded_batches, read_embedding_metadata
from jointspace.runs.fit import fit
from jointspace.train.logs import read_log
from jointspace.train.step import forward_backward
from shard_helpers import small_manifest

runner = CliRunner()


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shard-pipeline")
    manifest = small_manifest(root / "data")
    write_shards(read_manifest(manifest), root / "shards", maxcount=5)
    return manifest, root / "shards"


def small_config(**train):
    config = tiny_config(batch_size=4, **train)
    config.model.towers["text"].params["dropout"] = 0.0
    config.data.val_split = None
    return config


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("shard-run") / "run"
    fit(small_config(max_steps=3), out, manifest=data[0])
    return out


@pytest.mark.parametrize("split", [None, "test"])
def test_embed_from_shards_equals_embed_from_the_manifest(run, data, tmp_path, split):
    manifest, shards = data
    tables = []
    for name, spec in (("m", manifest), ("s", shards / "shard-{000000..000004}.tar")):
        out = tmp_path / f"{name}.parquet"
        args = ["embed", str(run), "--data", str(spec), "--out", str(out), "--batch-size", "5"]
        result = runner.invoke(app, args + (["--split", split] if split else []))
        assert result.exit_code == 0, result.output
        tables.append(pq.read_table(out))
    a, b = tables
    assert a.num_rows == b.num_rows == (12 if split is None else 2)  # distinct images
    for column in ("id", "image", "label"):
        assert a.column(column).to_pylist() == b.column(column).to_pylist()
    vectors = [np.array(t.column("embedding").to_pylist()) for t in tables]
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    source = read_embedding_metadata(tmp_path / "s.parquet")["jointspace.source"]
    assert source == str(shards / "shard-{000000..000004}.tar")  # the shard pattern read
    assert read_embedding_metadata(tmp_path / "s.parquet")["jointspace.split"] == (split or "")


def test_embedding_shards_streams_one_batch_at_a_time(run, data, monkeypatch):
    opened = []
    real = ShardSet.samples

    def counting(self, shard):
        opened.append(shard.path)
        return real(self, shard)

    monkeypatch.setattr(ShardSet, "samples", counting)
    source = ShardSource(ShardSet.open(data[1]))
    batches = embedded_batches(load(run), source, "text", batch_size=2)
    first = next(batches)
    assert first.num_rows == 2 and len(opened) == 1  # nothing past the first shard was read
    assert sum(t.num_rows for t in batches) + 2 == 8  # the 8 distinct captions


def test_index_build_from_shards_matches_the_manifest_and_serves_no_media(run, data, tmp_path):
    manifest, shards = data
    uris = {}
    for name, spec in (("m", manifest), ("s", shards)):
        uris[name] = f"faiss://{tmp_path / name}"
        args = ["index", "build", str(run), "--data", str(spec), "--index", uris[name]]
        result = runner.invoke(app, [*args, "--batch-size", "5"])
        assert result.exit_code == 0, result.output
        assert "12 image items" in result.output
    query = load(run).encode(["a red square"], "text")
    a, b = open_index(uris["m"]), open_index(uris["s"])
    try:
        assert a.ids() == b.ids()
        ids = sorted(a.ids())
        assert a.get(ids) == b.get(ids)  # image path, label and split alike
        hits = [[(h.id, round(h.score, 5)) for h in i.search(query, k=12)[0]] for i in (a, b)]
        assert hits[0] == hits[1]
        assert "shards" in b.info and "manifest" not in b.info
    finally:
        a.close()
        b.close()
    from jointspace.serve import create_app

    item = ids[0]
    for name, status in (("m", 200), ("s", 404)):  # tar members are not files to serve
        with TestClient(create_app(run, uris[name])) as client:
            assert client.get(f"/items/{item}").status_code == 200
            assert client.get(f"/media/{item}").status_code == status


def test_training_from_shards_matches_the_manifest_loss(data, tmp_path):
    """In order (no shuffle), the first batch is the first 4 training rows: same loss."""
    manifest, shards = data
    config = small_config(max_steps=3)
    config.data.shuffle_buffer, config.data.augment = 0, False
    streamed = fit(config, tmp_path / "run", manifest=str(shards))
    assert len(streamed.history) == 3 and (tmp_path / "run" / "model").is_dir()
    recorded = (tmp_path / "run" / "config.yaml").read_text()
    assert f"manifest: {shards.resolve()}" in recorded

    train = read_manifest(manifest).split("train")
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, corpus=train.column("text"))
    objective = build_objective(config.objectives)
    init = logit_init(objective)
    if init is not None:
        model.add_logit_bias(init.bias, init.scale)
    towers = model.towers
    dataset = PairedDataset(train, {m: towers[m].preprocess for m in towers})
    batch = make_collate({m: t.collate for m, t in towers.items()})([dataset[i] for i in range(4)])
    torch.manual_seed(config.train.seed)
    model.train()
    loss = forward_backward(model, objective, batch)["loss"]
    assert streamed.history[0]["loss"] == pytest.approx(loss.item(), abs=1e-5)


def test_training_from_shards_resumes_exactly(data, tmp_path):
    config = small_config(max_steps=9, checkpoint_every=2, warmup_steps=2)
    config.data.shuffle_buffer = 5  # 16 training rows: 4 steps per epoch, shuffled per epoch
    spec = str(data[1])
    straight = fit(config, tmp_path / "straight", manifest=spec)

    def interrupt(step, record):
        if step == 6:
            raise Interrupt()

    with pytest.raises(Interrupt):
        fit(config, tmp_path / "resumed", manifest=spec, callbacks=[interrupt])
    rest = fit(config, tmp_path / "resumed", manifest=spec, resume=True)
    assert [r["step"] for r in rest.history] == [7, 8, 9]  # resumed mid-epoch 2
    expected = [r["loss"] for r in straight.history[6:]]
    assert [r["loss"] for r in rest.history] == pytest.approx(expected, abs=1e-6)
    assert len({r["loss"] for r in straight.history[:4]}) == 4


def test_training_from_shards_evaluates_on_data_val_manifest(data, tmp_path):
    # The shards stream the training rows; the val split of data.val_manifest (the manifest the
    # shards were written from: its 4 val rows) is read once and evaluates every 2 steps.
    manifest, shards = data
    config = small_config(max_steps=4, eval_every=2, checkpoint_every=2, warmup_steps=1)
    config.data.val_split = "val"
    config.data.val_manifest = str(manifest)
    result = fit(config, tmp_path / "run", manifest=str(shards))
    evals = [r for r in read_log(tmp_path / "run" / "metrics.jsonl") if "eval" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert result.best is not None and result.best["step"] in (2, 4)
    best = next(r["eval"] for r in evals if r["step"] == result.best["step"])
    # What was logged is the retrieval evaluation of the saved (best) model on those rows.
    val = read_manifest(manifest).split("val")
    again = evaluate_model(load(tmp_path / "run"), val, config.eval, config.data.modalities)
    assert again.keys() == best.keys() and len(best) > 4
    assert again == pytest.approx(best, abs=1e-6)
    assert best["primary"] == max(r["eval"]["primary"] for r in evals)
    recorded = (tmp_path / "run" / "config.yaml").read_text()
    assert f"val_manifest: {manifest.resolve()}" in recorded


def test_a_val_manifest_without_the_val_split_is_a_clear_error(data, tmp_path):
    manifest, shards = data
    config = small_config(max_steps=2)
    config.data.val_split, config.data.val_manifest = "dev", str(manifest)
    with pytest.raises(ManifestError, match=r"manifest\.csv: no rows in split 'dev' \(splits: "):
        fit(config, tmp_path / "run", manifest=str(shards))
    assert not (tmp_path / "run").exists()  # refused before anything was written
