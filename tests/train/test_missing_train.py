"""Training with absent modalities: the step, the gradient cache, modality dropout, a short fit."""

import pytest
import torch

from absent_helpers import three_modality_config, write_three_modality_manifest
from jointspace import fit
from jointspace.config import ConfigError, ExperimentConfig
from jointspace.data.collate import Batch
from jointspace.objectives import ClipObjective
from jointspace.train.dropout import hide_cells
from jointspace.train.step import forward_backward, score
from tiny_steps import CHUNK, make_batch, tiny_model

MODALITIES = ("audio", "image", "text")


def with_absent_cells(batch: Batch) -> Batch:
    """``batch`` with a third of its images and a quarter of its captions marked absent."""
    n = len(batch)
    present = {"image": torch.arange(n) % 3 != 0, "text": torch.arange(n) % 4 != 1}
    present["image"][1] = True  # row 1 keeps its image alone
    groups = {m: torch.where(p, batch.groups[m], -1 - batch.index) for m, p in present.items()}
    return Batch(batch.inputs, groups, batch.index, present)


def grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_the_step_scores_only_rows_holding_both_and_the_gradient_cache_agrees():
    objective = ClipObjective()
    model = tiny_model(0.0, objective)
    batch = with_absent_cells(make_batch(model))
    plain = forward_backward(model, objective, batch)
    plain_grads = grads(model)
    model.zero_grad()
    cached = forward_backward(model, objective, batch, grad_cache_chunk=CHUNK)
    assert cached["loss"].item() == pytest.approx(plain["loss"].item(), abs=1e-5)
    for name, grad in grads(model).items():
        assert torch.allclose(grad, plain_grads[name], atol=1e-5), name
    # The loss is that of the rows holding both sides, scored alone.
    rows = batch.present["image"] & batch.present["text"]
    with torch.no_grad():
        embeddings = model(batch.inputs)
        alone = Batch({}, {m: g[rows] for m, g in batch.groups.items()}, batch.index[rows])
        want = score(model, objective, {m: e[rows] for m, e in embeddings.items()}, alone)
    assert plain["loss"].item() == pytest.approx(want["clip_loss"].item(), abs=1e-5)


def test_a_complete_batch_is_scored_as_before_presence_marks_existed():
    objective = ClipObjective()
    model = tiny_model(0.0, objective)
    bare = make_batch(model)
    marked = Batch(
        bare.inputs, bare.groups, bare.index, {m: torch.ones(len(bare)).bool() for m in bare.inputs}
    )
    with torch.no_grad():
        embeddings = model(bare.inputs)
        assert torch.equal(
            score(model, objective, embeddings, marked)["clip_loss"],
            score(model, objective, embeddings, bare)["clip_loss"],
        )


def batch_of(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    present = {m: torch.rand(n, generator=g) < 0.7 for m in MODALITIES}
    present["text"] |= ~(present["image"] | present["audio"])
    groups = {m: torch.where(p, torch.arange(n), -1 - torch.arange(n)) for m, p in present.items()}
    return Batch({m: torch.zeros(n, 1) for m in MODALITIES}, groups, torch.arange(n), present)


def test_modality_dropout_is_reproducible_and_never_hides_a_last_modality():
    batch = batch_of(2000)
    dropout = {"audio": 0.9, "image": 0.9, "text": 0.9}
    first = hide_cells(batch, dropout, 3, 17)
    again = hide_cells(batch, dropout, 3, 17)
    other = hide_cells(batch, dropout, 3, 18)
    assert all(torch.equal(first.present[m], again.present[m]) for m in MODALITIES)
    assert any(not torch.equal(first.present[m], other.present[m]) for m in MODALITIES)
    kept = torch.stack([first.present[m] for m in MODALITIES]).sum(0)
    assert kept.min() == 1  # every row keeps at least one modality, and usually no more
    for m in MODALITIES:
        assert not (first.present[m] & ~batch.present[m]).any()  # hidden, never revealed
        hidden = batch.present[m] & ~first.present[m]
        assert (first.groups[m][hidden] == -1 - batch.index[hidden]).all()
    assert (
        hide_cells(batch, {}, 3, 17) is batch and hide_cells(batch, {"text": 0.0}, 3, 17) is batch
    )


def test_modality_dropout_hides_at_the_rate_asked_and_only_the_modality_named():
    batch = batch_of(4000, seed=1)
    out = hide_cells(batch, {"audio": 0.3}, 0, 5)
    assert torch.equal(out.present["text"], batch.present["text"])
    assert torch.equal(out.present["image"], batch.present["image"])
    others = batch.present["text"] | batch.present["image"]  # rows where audio is not the last
    had = batch.present["audio"] & others
    rate = float((had & ~out.present["audio"]).sum() / had.sum())
    assert 0.27 < rate < 0.33
    alone = batch.present["audio"] & ~others
    assert out.present["audio"][alone].all()


def test_modality_dropout_and_anchor_are_checked_in_the_config():
    raw = ExperimentConfig().to_dict()
    raw["train"]["modality_dropout"] = {"image": 0.5}
    config = ExperimentConfig.from_dict(raw)
    assert config.train.modality_dropout == {"image": 0.5}
    assert ExperimentConfig.from_dict(config.to_dict()) == config
    assert ExperimentConfig().train.modality_dropout == {}
    raw["train"]["modality_dropout"] = {"image": 1.5}
    with pytest.raises(ConfigError, match=r"train.modality_dropout.image: must be at most 1"):
        ExperimentConfig.from_dict(raw)
    raw["train"]["modality_dropout"] = {"audio": 0.5}
    with pytest.raises(ConfigError, match=r"train.modality_dropout.audio: not among data"):
        ExperimentConfig.from_dict(raw)
    raw["train"]["modality_dropout"] = {}
    raw["objectives"] = [{"name": "clip", "params": {"anchor": "audio"}}]
    with pytest.raises(ConfigError, match=r"clip anchor 'audio' is not a modality"):
        ExperimentConfig.from_dict(raw)


def test_a_short_fit_with_missing_audio_cells_runs_and_its_loss_falls(tmp_path):
    manifest = write_three_modality_manifest(tmp_path / "data", rows=48)
    config = three_modality_config(modality_dropout={"image": 0.3})
    result = fit(config, tmp_path / "run", manifest=manifest)
    losses = [r["loss"] for r in result.history]
    assert len(losses) == 36 and all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:6]) / 6, sum(losses[-6:]) / 6
    assert last < 0.8 * first, (first, last)
