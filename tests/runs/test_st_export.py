"""export_sentence_transformers: a directory SentenceTransformer loads, giving the same vectors."""

import json

import numpy as np
import pytest

from jointspace.config import ModelConfig, TowerConfig
from jointspace.models.build import build_model
from jointspace.runs import Run
from jointspace.runs.onnx_export import ParityError
from jointspace.runs.outputs import OutputExistsError
from jointspace.runs.st_export import (
    PARITY_FLOOR,
    RECORD_FILE,
    UnsupportedTowerError,
    export_sentence_transformers,
)
from tiny_bert import hf_text_model, tiny_bert

# Texts the export's own parity check never saw: unseen words, one past max_len (truncated).
TEXTS = [
    "a red apple",
    "zebra crossing at night",
    "seven",
    "the black cat and the two dogs play on the sofa with a red ball near the table today",
]
FLOOR = 0.99999  # st_export.PARITY_FLOOR, the floor docs/export.md promises


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("bert") / "bert")


def saved_run(checkpoint, directory, **params):
    hf_text_model(checkpoint, **params).save(directory)
    return Run.open(directory)


@pytest.mark.parametrize("pooling,head", [("mean", "linear"), ("cls", "mlp"), ("mean", "affine")])
def test_sentence_transformer_gives_the_towers_vectors(checkpoint, tmp_path, pooling, head):
    from sentence_transformers import SentenceTransformer

    run = saved_run(checkpoint, tmp_path / "model", pooling=pooling, head=head)
    out = export_sentence_transformers(run, tmp_path / "st")
    assert out == tmp_path / "st"
    got = SentenceTransformer(str(out), device="cpu").encode(TEXTS)
    expected = run.model.encode(TEXTS, modality="text")
    assert got.shape == expected.shape == (4, 8)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(got * expected, axis=1)
    assert cosines.min() >= FLOOR == PARITY_FLOOR
    np.testing.assert_allclose(got, expected, atol=1e-5)

    record = json.loads((out / RECORD_FILE).read_text())
    assert record["model_fingerprint"] == run.fingerprint
    assert record["towers"]["text"]["encoder"] == "hf_text"
    assert record["towers"]["text"]["parity"]["min_cosine"] >= FLOOR
    assert "'cnn' image tower" in record["skipped"]["image"]
    assert "--to onnx" in record["skipped"]["image"]
    modules = [m["type"] for m in json.loads((out / "modules.json").read_text())]
    denses = 2 if head == "mlp" else 1
    assert [t.rsplit(".", 1)[-1] for t in modules] == [
        "Transformer",
        "Pooling",
        *["Dense"] * denses,
        "Normalize",
    ]
    assert not (out / ".backbone").exists()


def test_mlp_head_keeps_its_gelu_and_the_last_dense_has_no_activation(checkpoint, tmp_path):
    run = saved_run(checkpoint, tmp_path / "model", head="mlp")
    out = export_sentence_transformers(run, tmp_path / "st")
    configs = sorted(out.glob("*Dense/config.json"))
    activations = [json.loads(p.read_text())["activation_function"] for p in configs]
    assert activations == ["torch.nn.modules.activation.GELU", "torch.nn.modules.linear.Identity"]


def test_scratch_text_tower_is_refused_naming_onnx(tmp_path):
    text = TowerConfig("transformer", dict(width=16, depth=1, heads=2, max_len=16))
    model = build_model(ModelConfig(embed_dim=8, towers={"text": text}), corpus=["a b c"] * 3)
    model.save(tmp_path / "model")
    with pytest.raises(UnsupportedTowerError, match=r"'transformer'.*--to onnx DIR"):
        export_sentence_transformers(Run.open(tmp_path / "model"), tmp_path / "st")
    assert not (tmp_path / "st").exists()


def test_a_run_without_text_tower_is_refused(tmp_path):
    image = TowerConfig("cnn", dict(image_size=16, widths=[8, 16]))
    build_model(ModelConfig(embed_dim=8, towers={"image": image})).save(tmp_path / "model")
    with pytest.raises(UnsupportedTowerError, match=r"has none \(towers: image\).*--to onnx"):
        export_sentence_transformers(Run.open(tmp_path / "model"), tmp_path / "st")


def test_existing_dirs_are_refused_and_force_replaces_only_an_earlier_export(checkpoint, tmp_path):
    run = saved_run(checkpoint, tmp_path / "model", image=False)
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    for force in (False, True):
        with pytest.raises(OutputExistsError, match="not written by `jointspace export`"):
            export_sentence_transformers(run, foreign, force=force)
    assert [p.name for p in foreign.iterdir()] == ["mine.txt"]

    out = export_sentence_transformers(run, tmp_path / "st")
    assert json.loads((out / RECORD_FILE).read_text())["skipped"] == {}
    with pytest.raises(OutputExistsError, match="pass --force to replace it"):
        export_sentence_transformers(run, out)
    (out / "mine.txt").write_text("a user's note inside the export")
    with pytest.raises(OutputExistsError, match=r"holds mine\.txt"):
        export_sentence_transformers(run, out, force=True)
    (out / "mine.txt").unlink()
    before = (out / "model.safetensors").read_bytes()
    export_sentence_transformers(run, out, force=True)
    assert (out / "model.safetensors").read_bytes() == before


def test_parity_failure_writes_nothing(checkpoint, tmp_path, monkeypatch):
    from jointspace.runs import st_export

    run = saved_run(checkpoint, tmp_path / "model", image=False)
    monkeypatch.setattr(st_export, "PARITY_FLOOR", 1.5)  # no export can reach it
    with pytest.raises(ParityError, match=r"worst cosine .* < 1.5 .*nothing was written"):
        export_sentence_transformers(run, tmp_path / "st")
    assert not (tmp_path / "st").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".st")]
