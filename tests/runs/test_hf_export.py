"""export_hf: a run on a CLIP/SigLIP checkpoint written back as a from_pretrained directory."""

import numpy as np
import pytest
import torch
from PIL import Image

from hf_checkpoints import features, hf_text_inputs
from jointspace.config import ModelConfig, TowerConfig
from jointspace.models import build_model
from jointspace.runs import Run, hf_export
from jointspace.runs.hf_export import HFExportError, export_hf
from jointspace.runs.outputs import OutputExistsError

TEXTS = ["the digit seven written by hand", "a cat", "an icon of a dog"]


def pictures():
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)) for _ in range(3)]


@pytest.fixture(scope="module")
def tuned(hf_clip_dirs, tmp_path_factory):
    """Each checkpoint as a saved jointspace model whose weights moved away from the source."""
    saved = {}
    for kind, source in hf_clip_dirs.items():
        model = build_model(ModelConfig(pretrained=str(source)))
        with torch.no_grad():
            for param in model.parameters():  # as if fine-tuned: every weight changes
                param.add_(0.01 * torch.randn_like(param))
        saved[kind] = tmp_path_factory.mktemp(kind) / "model"
        model.save(saved[kind])
    return saved


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_the_export_loads_with_transformers_and_gives_the_runs_features(
    hf_clip_dirs, tuned, tmp_path, kind
):
    from transformers import AutoImageProcessor, AutoModel

    run = Run.open(tuned[kind])
    out = export_hf(run, tmp_path / "hf")
    model = AutoModel.from_pretrained(out, local_files_only=True).eval()
    assert type(model).__name__ == ("CLIPModel" if kind == "clip" else "SiglipModel")
    inputs = hf_text_inputs(out, TEXTS, siglip=kind == "siglip")  # the exported tokenizer
    if kind == "siglip":
        inputs = {"input_ids": inputs["input_ids"]}
    processor = AutoImageProcessor.from_pretrained(out, local_files_only=True)
    with torch.no_grad():
        text = features(model.get_text_features(**inputs))
        pixels = processor(images=pictures(), return_tensors="pt")["pixel_values"]
        image = features(model.get_image_features(pixel_values=pixels))
    ours = run.model
    np.testing.assert_allclose(ours.encode(TEXTS, "text", normalize=False), text, atol=1e-5)
    np.testing.assert_allclose(ours.encode(pictures(), "image", normalize=False), image, atol=1e-5)
    assert model.logit_scale.item() == pytest.approx(ours.logit_scale.item(), abs=1e-7)
    if kind == "siglip":
        assert model.logit_bias.item() == pytest.approx(ours.logit_bias.item(), abs=1e-7)
    # The fine-tuned weights, not the source's.
    source = AutoModel.from_pretrained(hf_clip_dirs[kind], local_files_only=True)
    key = "text_model.encoder.layers.0.mlp.fc1.weight"
    assert not torch.equal(model.state_dict()[key], source.state_dict()[key])


def test_an_existing_export_is_replaced_only_with_force(tuned, tmp_path):
    run = Run.open(tuned["clip"])
    export_hf(run, tmp_path / "hf")
    with pytest.raises(OutputExistsError, match="pass --force"):
        export_hf(run, tmp_path / "hf")
    export_hf(run, tmp_path / "hf", force=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="was not written by `jointspace export`"):
        export_hf(run, tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_failed_parity_writes_nothing(tuned, tmp_path, monkeypatch):
    monkeypatch.setattr(hf_export, "PARITY_ATOL", -1.0)
    with pytest.raises(HFExportError, match="nothing was written"):
        export_hf(Run.open(tuned["clip"]), tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_runs_with_other_towers_are_refused_in_one_line(hf_clip_dirs, tmp_path):
    towers = {
        "text": TowerConfig("transformer", dict(width=32, depth=1, heads=2, max_len=16)),
        "image": TowerConfig("hf_clip_image", {"path": str(hf_clip_dirs["clip"])}),
    }
    model = build_model(ModelConfig(embed_dim=24, towers=towers), corpus=TEXTS)
    model.save(tmp_path / "model")
    with pytest.raises(HFExportError, match="needs the towers hf_clip_text and hf_clip_image") as e:
        export_hf(Run.open(tmp_path / "model"), tmp_path / "hf")
    assert "\n" not in str(e.value) and not (tmp_path / "hf").exists()
