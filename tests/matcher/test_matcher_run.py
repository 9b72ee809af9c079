"""A trained run with a matcher: train_matcher, re-ranked search in the service, page and CLI."""

import json
import shutil

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from conftest import tiny_config
from jointspace.config import RerankConfig
from jointspace.matcher.loss import sample_positives
from jointspace.matcher.model import MATCHER_DIR, METRICS_FILE, load_matcher


@pytest.fixture(scope="module")
def reranked_run(tmp_path_factory, digits_manifest):
    """A briefly trained digits model with a matcher, its image index and a served app."""
    from jointspace.data import read_manifest
    from jointspace.runs import Run, train_matcher
    from jointspace.runs.fit import fit
    from jointspace.serve import create_app

    root = tmp_path_factory.mktemp("rerank")
    config = tiny_config(batch_size=256, max_steps=30)
    config.rerank = RerankConfig(width=32, depth=1, heads=2, epochs=1, candidates=5)
    config.rerank.progress = False
    fit(config, root / "run", manifest=digits_manifest)
    plain = f"faiss://{root / 'index'}"
    manifest = read_manifest(digits_manifest)
    Run.open(root / "run").build_index(manifest, "image", plain, progress=False).close()
    bare_app = create_app(root / "run", plain)
    metrics = train_matcher(Run.open(root / "run"), data=digits_manifest)
    return root / "run", metrics, create_app(root / "run", plain), bare_app, plain


def test_train_matcher_saves_a_matcher_with_before_and_after_metrics(reranked_run, digits_manifest):
    from jointspace.data import read_manifest
    from jointspace.evaluate import chance_retrieval

    run, metrics, *_ = reranked_run
    assert set(metrics) == {"val", "test"}
    for split, stages in metrics.items():
        found = chance_retrieval(read_manifest(digits_manifest).split(split), relevance="label")
        chance = {d: found[f"{d}/R@1"] for d in ("text_to_image", "image_to_text")}
        assert set(stages) == {"bi_encoder", "reranked"}
        bi_encoder, reranked = stages["bi_encoder"], stages["reranked"]
        for direction in ("text_to_image", "image_to_text"):
            # only the top 5 are re-ordered, so recall at 5 and beyond is the bi-encoder's exactly
            for k in (5, 10):
                assert reranked[f"{direction}/R@{k}"] == bi_encoder[f"{direction}/R@{k}"]
            # the weight was chosen on val; here the matcher adds 4-7 points of R@1
            assert reranked[f"{direction}/R@1"] >= bi_encoder[f"{direction}/R@1"], stages
            assert reranked[f"{direction}/R@1"] > 4 * chance[direction], stages
    saved = json.loads((run / "model" / MATCHER_DIR / METRICS_FILE).read_text())
    assert saved["candidates"] == 5 and saved["test"] == metrics["test"]


def test_search_reranks_the_top_candidates(reranked_run):
    run, _, app, *_ = reranked_run
    with TestClient(app) as client:
        assert client.get("/health").json()["rerank"] == ["text", "image"]
        query = {"text": "a handwritten seven", "k": "3"}
        plain = client.post("/search", data={**query, "k": "5"}).json()["results"]
        reranked = client.post("/search", data={**query, "rerank": "5"}).json()["results"]
    matcher = load_matcher(run / "model" / MATCHER_DIR)
    assert matcher.modalities == ["text", "image"]
    scores = [r["rerank_score"] for r in reranked]
    assert len(reranked) == 3 and scores == sorted(scores, reverse=True)
    assert {r["id"] for r in reranked} <= {r["id"] for r in plain}
    assert all(r["rerank_score"] is None for r in plain)
    assert np.isfinite(scores).all()


def test_rerank_errors_are_clear_4xx(reranked_run):
    _, _, app, bare_app, _ = reranked_run
    with TestClient(app) as client:
        too_many = client.post("/search", data={"text": "a 3", "rerank": "101"})
        assert too_many.status_code == 422
        image = client.get("/items/0000-0").json()["media"]
        files = {"image": ("q.png", client.get(image).content, "image/png")}
        wrong_pair = client.post("/search", data={"rerank": "5"}, files=files)
        assert wrong_pair.status_code == 422 and "not image with image" in wrong_pair.text
        assert client.get("/health").status_code == 200
    with TestClient(bare_app) as client:
        missing = client.post("/search", data={"text": "a 3", "rerank": "5"})
        assert missing.status_code == 422 and "jointspace rerank" in missing.text
        assert client.get("/health").json()["rerank"] == []


def test_search_page_reranks_in_headless_chromium(reranked_run, tmp_path):
    from jointspace.serve.local import running_server, search_in_browser

    _, _, app, *_ = reranked_run
    with running_server(app) as url:
        hits = search_in_browser(url, "a handwritten seven", rerank=12)
    assert len(hits) == 12 and all("match" in h["caption"] for h in hits)
    matches = [float(h["caption"].rsplit("match ", 1)[1]) for h in hits]
    assert matches == sorted(matches, reverse=True)


def test_rerank_command_prints_before_and_after(reranked_run, tmp_path):
    from typer.testing import CliRunner

    from jointspace.cli import app

    run, *_ = reranked_run
    out = tmp_path / "rerank.json"
    args = ["rerank", str(run), "--epochs", "1", "--json", str(out), "--force"]  # replaces one
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "text → image (reranked)" in result.output and "bi_encoder" in result.output
    assert set(json.loads(out.read_text())) == {"val", "test"}


def test_index_search_command_reranks(reranked_run, tmp_path):
    from typer.testing import CliRunner

    from jointspace.cli import app

    run, _, _, _, uri = reranked_run
    args = ["index", "search", str(run), "--index", uri, "--query", "the digit 3", "--k", "3"]
    plain = CliRunner().invoke(app, args)
    reranked = CliRunner().invoke(app, [*args, "--rerank", "5"])
    assert plain.exit_code == 0 and reranked.exit_code == 0, reranked.output
    # Table rows that start a result (a wrapped metadata cell continues on rank-less lines).
    cells = [line.split("│") for line in reranked.output.splitlines() if line.startswith("│")]
    matches = [float(c[3]) for c in cells if c[1].strip()]
    assert len(matches) == 3 and matches == sorted(matches, reverse=True)
    other = tmp_path / "no-matcher"
    shutil.copytree(run, other)
    shutil.rmtree(other / "model" / MATCHER_DIR)
    refused = CliRunner().invoke(
        app, ["index", "search", str(other), "--index", uri, "--query", "a 3", "--rerank", "5"]
    )
    assert refused.exit_code == 1 and "jointspace rerank" in refused.output


def test_a_bare_model_dir_needs_the_data_named(reranked_run, tmp_path):
    from jointspace.runs import Run, train_matcher

    run, *_ = reranked_run
    shutil.copytree(run / "model", tmp_path / "model")
    with pytest.raises(ValueError, match="--data"):
        train_matcher(Run.open(tmp_path / "model"))


def test_search_matcher_input_errors_are_clear(reranked_run, tmp_path):
    from jointspace.errors import ArtifactError
    from jointspace.index import IndexHit
    from jointspace.matcher.search import SearchMatcher
    from jointspace.runs import Run

    run, *_ = reranked_run
    model, matcher = Run.open(run).model, Run.open(run).matcher
    search_matcher = SearchMatcher(model, matcher, "image", tmp_path)
    with pytest.raises(ArtifactError, match="not a file under"):
        search_matcher.scores("text", "a 3", [IndexHit("x", 0.5, {"image": "../outside.png"})])
    with pytest.raises(ArtifactError, match="has no 'image'"):
        search_matcher.scores("text", "a 3", [IndexHit("y", 0.5, {"text": "a 3"})])
    with pytest.raises(ValueError, match="no image inputs"):
        model.encode_tokens([], "image")
    with pytest.raises(ValueError, match="at least one matching"):
        sample_positives(torch.zeros(2, 3, dtype=torch.bool))


def test_train_matcher_needs_a_train_split(reranked_run, digits_manifest, tmp_path):
    import pandas as pd

    from jointspace.runs import Run, train_matcher

    run, *_ = reranked_run
    rows = pd.read_csv(digits_manifest)
    rows = rows[rows["split"] == "test"].assign(
        image=lambda d: [str(digits_manifest.parent / p) for p in d["image"]]
    )
    rows.to_csv(tmp_path / "test-only.csv", index=False)
    with pytest.raises(ValueError, match="no 'train' split"):
        train_matcher(Run.open(run), data=tmp_path / "test-only.csv")
