import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config
from jointspace.cli import app
from jointspace.data import read_manifest
from jointspace.evaluate.retrieval import chance_retrieval
from jointspace.models import load
from jointspace.models.build import build_model
from jointspace.runs.compare import compare, markdown_table, objectives_for
from jointspace.train.closed_form import fit_linear_cca, head_inputs


def test_compare_trains_every_objective_and_writes_the_table(tmp_path, digits_manifest):
    config = tiny_config(batch_size=128, epochs=2)
    config.data.val_split, config.model.embed_dim = None, 32  # CCA: at most the feature dims
    names = ["clip", "siglip", "triplet-max", "cca", "dcca"]
    rows = compare(config, names, tmp_path, manifest=digits_manifest, log=lambda _: None)
    assert [r["objective"] for r in rows] == names
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert [r["objective"] for r in saved] == names
    table = (tmp_path / "compare.md").read_text().splitlines()
    assert len(table) == 2 + len(names) + 3 and table[0].startswith("| objective | text→image R@1")
    chance = chance_retrieval(read_manifest(digits_manifest).split("test"), relevance="label")
    # the last row is the exact chance level; a line names the relevance every row uses
    assert table[2 + len(names)].startswith(f"| chance | {100 * chance['text_to_image/R@1']:.1f} |")
    assert table[-1].startswith("relevance=label (relevant = same label); chance = exact")
    assert all(row["relevance"] == "label" for row in saved)
    assert saved[0]["text_to_image/chance_R@1"] == pytest.approx(chance["text_to_image/R@1"])
    for row in rows:
        floor = 1.5 * chance["text_to_image/R@1"]
        assert row["text_to_image/R@1"] > floor, row["objective"]
    assert rows[0]["text_to_image/R@1"] > 0.5  # two epochs of CLIP already separate the digits


def test_unknown_objective_fails_before_training(tmp_path, digits_manifest):
    with pytest.raises(KeyError, match=r"unknown objective 'vse'; known: cca, clip, dcca"):
        compare(tiny_config(), ["clip", "vse"], tmp_path, manifest=digits_manifest)
    assert not (tmp_path / "clip").exists()
    assert objectives_for("triplet-max")[0].params == {"reduction": "max"}


def test_linear_cca_heads_give_the_canonical_correlations_and_reload(tmp_path, digits_manifest):
    config = tiny_config()
    config.model.embed_dim = 8
    train = read_manifest(digits_manifest).split("train")
    torch.manual_seed(0)
    model = build_model(config.model, corpus=train.column("text")).eval()
    cca = fit_linear_cca(model, train, ("text", "image"))
    text = model.encode(train.column("text"), "text", normalize=False)
    image = model.encode(
        [train.resolve(v) for v in train.column("image")], "image", normalize=False
    )
    assert head_inputs(model, train, "text").shape == (len(train), 32)
    correlations = [np.corrcoef(text[:, i], image[:, i])[0, 1] for i in range(8)]
    assert np.all(np.diff(cca.correlations_) <= 1e-9) and cca.correlations_[0] > 0.5
    np.testing.assert_allclose(correlations, cca.correlations_, atol=0.01)
    rows = train.rows[:5]
    model.save(tmp_path / "m")
    again = load(tmp_path / "m").encode([r["text"] for r in rows[:5]], "text")
    np.testing.assert_allclose(
        again, model.encode([r["text"] for r in rows[:5]], "text"), atol=1e-6
    )


def test_compare_command_prints_the_table(tmp_path, digits_manifest):
    config = tiny_config(batch_size=256, max_steps=2)
    config.data.val_split = None
    config.to_yaml(tmp_path / "c.yaml")
    args = ["compare", str(tmp_path / "c.yaml"), "--objectives", "clip,triplet-sum"]
    args += ["--data", str(digits_manifest), "--out", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| triplet-sum |" in result.output and (tmp_path / "runs" / "compare.md").is_file()


def test_a_second_cca_fit_reads_frozen_features_from_the_cache(
    tmp_path, digits_manifest, monkeypatch
):
    from jointspace.encoders.image import SmallCNN
    from jointspace.encoders.text import TextTransformer

    config = tiny_config()
    config.data.val_split, config.model.embed_dim = None, 16
    config.train.feature_cache = str(tmp_path / "features")
    for tower in config.model.towers.values():
        tower.lock = True  # frozen backbones: only the closed-form heads change
    calls = []
    for tower_class in (SmallCNN, TextTransformer):
        pooled = tower_class.pooled

        def counting(self, x, pooled=pooled):
            calls.append(len(x))
            return pooled(self, x)

        monkeypatch.setattr(tower_class, "pooled", counting)
    first = compare(config, ["cca"], tmp_path / "a", manifest=digits_manifest, log=lambda _: None)
    assert sum(calls) > 0  # the first fit computes and stores the features
    calls.clear()
    again = compare(config, ["cca"], tmp_path / "b", manifest=digits_manifest, log=lambda _: None)
    assert calls == []  # fit and evaluation: no tower forward pass at all
    assert again[0]["text_to_image/R@1"] == pytest.approx(first[0]["text_to_image/R@1"])


def test_the_table_shows_the_recalls_the_runs_measured():
    row = {"objective": "clip", "train_seconds": 3.0, "relevance": "pairs"}
    for d in ("text_to_image", "image_to_text"):
        row |= {f"{d}/R@2": 0.25, f"{d}/R@10": 0.5, f"{d}/mAP": 0.125, f"{d}/median_rank": 4}
        row |= {f"{d}/chance_R@2": 0.01, f"{d}/chance_R@10": 0.05, f"{d}/chance_mAP": 0.02}
    table = markdown_table([row], ["text", "image"])
    header = table.splitlines()[0]
    assert "text→image R@2" in header and "image→text R@10" in header and "R@5" not in header
    assert "median" not in header and "chance" not in header
    assert "| clip | 25.0 | 50.0 | 12.5 | 25.0 | 50.0 | 12.5 | 3 |" in table
    assert "| chance | 1.0 | 5.0 | 2.0 | 1.0 | 5.0 | 2.0 | - |" in table
