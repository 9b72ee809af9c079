import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import tiny_config
from jointspace.cli import app
from jointspace.report.browser import dump_dom, screenshot
from jointspace.report.build import recall_curve

runner = CliRunner()


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, digits_manifest):
    from jointspace.pipeline import fit

    root = tmp_path_factory.mktemp("report")
    fit(tiny_config(epochs=2, batch_size=128), root / "run", manifest=digits_manifest)
    args = ["report", str(root / "run"), "--data", str(digits_manifest), "--out", str(root / "r")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return root / "r"


def test_report_json_holds_every_section(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    metrics = report["retrieval"]["metrics"]
    chance = report["retrieval"]["chance"]["text_to_image"]
    assert report["relevance"] == "label" and metrics["text_to_image/R@1"] > 2 * chance["R@1"]
    assert report["zeroshot"]["split"] == "zeroshot" and report["zeroshot"]["classes"] == 2
    assert report["probe"]["modality"] == "image" and 0 <= report["probe"]["test_accuracy"] <= 1
    assert {"modality_gap", "alignment", "text/uniformity"} <= set(report["geometry"]["values"])
    assert set(report["geometry"]["notes"]) == set(report["geometry"]["values"])
    failures = report["failures"]["queries"]
    ranks = [f["rank"] for f in failures]
    assert len(failures) == 8 and ranks == sorted(ranks, reverse=True)
    assert report["training"]["steps"] > 0
    for name in ("recall_at_k", "similarity", "map", "confusion", "training"):
        assert Image.open(report_dir / f"{name}.png").size[0] > 300


def test_report_renders_in_headless_chromium(report_dir):
    dom = dump_dom(report_dir / "index.html")
    for heading in ("Retrieval", "Zero-shot classification", "Linear probe", "Top failures"):
        assert f"<h2>{heading}" in dom
    png = screenshot(report_dir / "index.html", report_dir / "shot.png", height=1600)
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert pixels.shape == (1600, 1200) and pixels.std() > 20  # not a blank page


def test_recall_curve_by_hand():
    curve = recall_curve(np.array([1, 3, 3, 10]), max_k=4)
    np.testing.assert_allclose(curve, [0.25, 0.25, 0.75, 0.75])


def test_zeroshot_command_prints_and_writes_json(report_dir, digits_manifest, tmp_path):
    run = report_dir.parent / "run"
    args = [
        "zeroshot",
        str(run),
        "--data",
        str(digits_manifest),
        "--json",
        str(tmp_path / "z.json"),
    ]
    result = runner.invoke(app, [*args, "--template", "the digit {}"])
    assert result.exit_code == 0, result.output
    assert "2 classes, zeroshot split" in result.output
    saved = json.loads((tmp_path / "z.json").read_text())
    assert set(saved["per_class"]) == {"eight", "nine"} and saved["metrics"]["top5"] == 1.0


def test_project_2d_pca_keeps_the_main_direction_and_tsne_runs():
    from jointspace.report.build import project_2d

    rng = np.random.default_rng(0)
    t = rng.normal(size=50)
    points = np.outer(t, [1.0, 2.0, 2.0]) + 0.01 * rng.normal(size=(50, 3))
    flat = project_2d(points)
    assert np.var(flat[:, 0]) == pytest.approx(9 * np.var(t), rel=0.01)
    assert np.var(flat[:, 1]) < 1e-3
    assert project_2d(points, "tsne").shape == (50, 2)
    with pytest.raises(ValueError, match="'pca' or 'tsne'"):
        project_2d(points, "umap")
