import itertools
import json
import math
import shutil

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from conftest import tiny_config
from jointspace.config import ConfigError, RerankConfig
from jointspace.evaluate.rerank import (
    PRIOR_WEIGHTS,
    directions,
    fit_prior_weight,
    rerank_metrics,
    reranked_scores,
    score_directions,
)
from jointspace.models.matcher import (
    MATCHER_DIR,
    METRICS_FILE,
    CrossModalMatcher,
    MatcherConfig,
    load_matcher,
    save_matcher,
)
from jointspace.objectives.itm import hard_negatives, itm_loss, sample_positives
from jointspace.train.matcher import MatchingSet, fit_matcher


def test_itm_loss_equals_the_naive_formula():
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    naive = -sum(
        math.log(math.exp(row[0]) / sum(math.exp(v) for v in row)) for row in logits.tolist()
    ) / len(logits)
    assert itm_loss(logits).item() == pytest.approx(naive, abs=1e-5)
    with pytest.raises(ValueError, match="negatives"):
        itm_loss(torch.zeros(3, 1))


def test_hard_negatives_come_from_the_best_non_matches():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(20, 50, generator=generator)
    relevant = torch.zeros(20, 50, dtype=torch.bool)
    relevant[torch.arange(20), torch.arange(20)] = True
    picked = hard_negatives(scores, relevant, count=4, pool=8, generator=generator)
    top = scores.masked_fill(relevant, float("-inf")).topk(8, dim=1).indices
    for row, columns in enumerate(picked.tolist()):
        assert len(set(columns)) == 4 and not relevant[row, columns].any()
        assert set(columns) <= set(top[row].tolist())
    assert (relevant[torch.arange(20), sample_positives(relevant, generator)]).all()
    with pytest.raises(ValueError, match="negatives per query"):
        hard_negatives(scores[:, :3], relevant[:, :3], count=4, pool=8)


def order_task(symbols: int = 6, dim: int = 16) -> MatchingSet:
    """Items are ordered symbol pairs; the bi-encoder score is bag-of-words, blind to order."""
    generator = torch.Generator().manual_seed(0)
    words, patches = torch.randn(2, symbols, dim, generator=generator)
    pairs = list(itertools.permutations(range(symbols), 2))
    text = torch.stack([words[list(p)] for p in pairs])
    image = torch.stack([patches[list(p)] for p in pairs])
    bags = torch.zeros(len(pairs), symbols)
    for i, p in enumerate(pairs):
        bags[i, list(p)] = 1.0
    mask = torch.ones(len(pairs), 2, dtype=torch.bool)
    return MatchingSet(
        ("text", "image"),
        {"text": (text, mask), "image": (image, mask)},
        bags @ bags.T / 2,
        torch.eye(len(pairs), dtype=torch.bool),
    )


def test_matcher_tells_apart_what_a_bag_of_words_bi_encoder_cannot():
    data = order_task()
    config = RerankConfig(width=32, depth=2, heads=2, dropout=0.0, epochs=120, batch_size=16)
    config.lr, config.negatives, config.pool, config.progress = 3e-3, 3, 3, False
    fit = fit_matcher(data, config)
    before = rerank_metrics(None, data, candidates=8)
    after = rerank_metrics(fit.matcher, data, candidates=8)
    # (a, b) and (b, a) tie for the bi-encoder, and ties count against it.
    assert before["text_to_image/R@1"] == 0.0 and before["image_to_text/R@1"] == 0.0
    assert after["text_to_image/R@1"] >= 0.9 and after["image_to_text/R@1"] >= 0.9
    assert fit.history[-1]["itm_loss"] < 0.5 * fit.history[0]["itm_loss"]


def test_prior_weight_blends_in_the_bi_encoder_and_is_chosen_on_data():
    data = order_task()
    data.scores += 0.01 * torch.randn(data.scores.shape, generator=torch.Generator().manual_seed(1))
    matcher = fit_matcher(data, RerankConfig(epochs=0, progress=False)).matcher
    matcher.prior_weight.fill_(1e6)  # the bi-encoder's score decides; the matcher's is noise
    for d in directions(matcher, data, candidates=10):
        expected = d.scores.argsort(dim=1, descending=True)
        assert torch.equal(reranked_scores(d, 1e6).argsort(dim=1, descending=True), expected)
    assert rerank_metrics(matcher, data, 10) == rerank_metrics(None, data, 10)
    best = fit_prior_weight(matcher, data, 10, scale=2.0)
    found = directions(matcher, data, 10)
    grid = [score_directions(found, 2.0 * w)["primary"] for w in PRIOR_WEIGHTS]
    assert best == max(grid) and float(matcher.prior_weight) / 2.0 in PRIOR_WEIGHTS
    assert rerank_metrics(matcher, data, 10)["primary"] == best


def test_matcher_round_trips_and_refuses_another_model(tmp_path):
    config = MatcherConfig(["text", "image"], {"text": 8, "image": 4}, {"text": 5, "image": 3})
    config.model_fingerprint = "abc"
    matcher = CrossModalMatcher(config)
    matcher.prior_weight.fill_(2.5)
    save_matcher(matcher, tmp_path / "m", {"candidates": 5})
    loaded = load_matcher(tmp_path / "m", "abc")
    tokens = {
        "text": (torch.randn(4, 5, 8), torch.tensor([[1, 1, 1, 0, 0]] * 4, dtype=torch.bool)),
        "image": (torch.randn(4, 3, 4), torch.ones(4, 3, dtype=torch.bool)),
    }
    matcher.eval()
    assert torch.equal(matcher.score(tokens, torch.ones(4)), loaded.score(tokens, torch.ones(4)))
    assert float(loaded.prior_weight) == 2.5
    assert json.loads((tmp_path / "m" / METRICS_FILE).read_text()) == {"candidates": 5}
    with pytest.raises(ConfigError, match="trained for model abc"):
        load_matcher(tmp_path / "m", "other")
    with pytest.raises(ValueError, match="at most 5"):
        loaded({**tokens, "text": (torch.randn(4, 6, 8), torch.ones(4, 6, dtype=torch.bool))})


@pytest.fixture(scope="module")
def reranked_run(tmp_path_factory, digits_manifest):
    """A briefly trained digits model with a matcher, its image index and a served app."""
    from jointspace.pipeline import fit, fit_reranker

    from jointspace.data import read_manifest
    from jointspace.index.build import build_index
    from jointspace.models import load
    from jointspace.serve import create_app

    root = tmp_path_factory.mktemp("rerank")
    config = tiny_config(batch_size=256, max_steps=30)
    config.rerank = RerankConfig(width=32, depth=1, heads=2, epochs=1, candidates=5)
    config.rerank.progress = False
    fit(config, root / "run", manifest=digits_manifest)
    plain = f"faiss://{root / 'index'}"
    manifest = read_manifest(digits_manifest)
    build_index(load(root / "run"), root / "run", manifest, "image", plain, progress=False).close()
    bare_app = create_app(root / "run", plain)
    metrics = fit_reranker(root / "run", manifest=digits_manifest)
    return root / "run", metrics, create_app(root / "run", plain), bare_app, plain


def test_fit_reranker_saves_a_matcher_with_before_and_after_metrics(reranked_run, digits_manifest):
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
    from jointspace.pipeline import fit_reranker

    run, *_ = reranked_run
    shutil.copytree(run / "model", tmp_path / "model")
    with pytest.raises(ValueError, match="--data"):
        fit_reranker(tmp_path / "model")


def test_reranker_input_errors_are_clear(reranked_run, tmp_path):
    from jointspace.index import IndexHit
    from jointspace.models import load
    from jointspace.serve.rerank import Reranker

    run, *_ = reranked_run
    model = load(run)
    reranker = Reranker.for_model(model, run, "image", tmp_path)
    from jointspace.errors import ArtifactError

    with pytest.raises(ArtifactError, match="not a file under"):
        reranker.scores("text", "a 3", [IndexHit("x", 0.5, {"image": "../outside.png"})])
    with pytest.raises(ArtifactError, match="has no 'image'"):
        reranker.scores("text", "a 3", [IndexHit("y", 0.5, {"text": "a 3"})])
    with pytest.raises(ValueError, match="no image inputs"):
        model.encode_tokens([], "image")
    with pytest.raises(ValueError, match="at least one matching"):
        sample_positives(torch.zeros(2, 3, dtype=torch.bool))


def test_fit_reranker_needs_a_train_split(reranked_run, digits_manifest, tmp_path):
    import pandas as pd
    from jointspace.pipeline import fit_reranker

    run, *_ = reranked_run
    rows = pd.read_csv(digits_manifest)
    rows = rows[rows["split"] == "test"].assign(
        image=lambda d: [str(digits_manifest.parent / p) for p in d["image"]]
    )
    rows.to_csv(tmp_path / "test-only.csv", index=False)
    with pytest.raises(ValueError, match="no 'train' split"):
        fit_reranker(run, manifest=tmp_path / "test-only.csv")
