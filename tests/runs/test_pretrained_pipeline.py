"""The locked-towers config through every command: train, eval, zeroshot, report, search, serve."""

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from jointspace.cli import app
from jointspace.config import ExperimentConfig, builtin_config
from jointspace.data import read_manifest
from jointspace.models.feature_cache import FeatureCache

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, digits_manifest):
    """digits-pretrained on 40 images per split (3 captions each), 64 px, 2 epochs."""
    root = tmp_path_factory.mktemp("pretrained")
    header, *lines = digits_manifest.read_text().splitlines()
    kept = [
        line
        for split in ("train", "val", "test", "zeroshot")
        for line in [x for x in lines if x.endswith(f",{split}")][:120]
    ]
    (root / "m.csv").write_text("\n".join([header, *kept]) + "\n")
    (root / "images").symlink_to(digits_manifest.parent / "images")
    config = ExperimentConfig.from_yaml(builtin_config("digits-pretrained"))
    config.model.towers["image"].params["image_size"] = 64
    config.train.epochs, config.train.progress, config.train.batch_size = 2, False, 64
    config.train.feature_cache = str(root / "cache")
    config.to_yaml(root / "config.yaml")
    invoke("train", root / "config.yaml", "--data", root / "m.csv", "--out", root / "run")
    return root


def test_training_filled_the_cache_for_both_towers(small_run):
    rows = [r for r in read_manifest(small_run / "m.csv").rows if r["split"] in ("train", "val")]
    cache = FeatureCache(small_run / "cache")
    sizes = {len(cache._table(d.name.split("-", 1)[1])) for d in (small_run / "cache").iterdir()}
    assert sizes == {len({r["image"] for r in rows}), len({r["text"] for r in rows})}


def test_eval_zeroshot_search_and_report(small_run):
    data = ["--data", small_run / "m.csv"]
    evaluated = invoke("eval", small_run / "run", *data, "--json", small_run / "e.json")
    metrics = json.loads((small_run / "e.json").read_text())
    assert "text → image" in evaluated
    # 2 epochs on 40 images: R@1 about 2.5x chance, mAP about 1.7x (chance is exact, per split)
    assert metrics["text_to_image/R@1"] > 1.5 * metrics["text_to_image/chance_R@1"], metrics
    assert metrics["text_to_image/mAP"] > 1.25 * metrics["text_to_image/chance_mAP"], metrics
    zero = invoke("zeroshot", small_run / "run", *data, "--json", small_run / "z.json")
    zero_json = json.loads((small_run / "z.json").read_text())
    assert "2 classes, zeroshot split (leaf class names)" in zero and zero_json["naming"] == "leaf"
    labels = sorted(zero_json["class_names"])
    names = small_run / "names.json"
    names.write_text(json.dumps({label: f"the number {label}" for label in labels}))
    options = ["--class-names", names, "--json", small_run / "z2.json", "--force"]
    invoke("zeroshot", small_run / "run", *data, *options)
    mapped = json.loads((small_run / "z2.json").read_text())
    assert mapped["naming"] == f"file:{names}"
    assert mapped["class_names"] == {label: f"the number {label}" for label in labels}
    found = invoke("search", small_run / "run", *data, "--query", "the digit 9", "--k", "3")
    assert found.count("images/") == 3
    invoke("report", small_run / "run", *data, "--out", small_run / "report")
    report = json.loads((small_run / "report" / "report.json").read_text())
    assert report["zeroshot"]["split"] == "zeroshot" and report["zeroshot"]["classes"] == 2


def test_index_and_serve(small_run):
    from jointspace.serve import create_app

    uri = f"faiss://{small_run / 'index'}"
    invoke("index", "build", small_run / "run", "--data", small_run / "m.csv", "--index", uri)
    client = TestClient(create_app(small_run / "run", uri))
    hits = client.post("/search", data={"text": "the digit 9", "k": "5"}).json()["results"]
    assert len(hits) == 5 and all(h["score"] <= 1.0001 for h in hits)
