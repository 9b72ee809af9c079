"""Towers from local Hugging Face CLIP/SigLIP checkpoints equal the checkpoint's own features."""

import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from hf_checkpoints import (
    CLIP_SCALE,
    SIGLIP_BIAS,
    SIGLIP_SCALE,
    features,
    hf_text_inputs,
)
from jointspace.config import ConfigError, ExperimentConfig, ModelConfig, TowerConfig
from jointspace.errors import JointspaceError, NotFoundError
from jointspace.models import build_model, load

TEXTS = [
    "a cat",
    "the digit seven written by hand",
    "an icon of a dog , eight nine zero one two three four five six seven eight nine",  # cut
    "zebra",  # unknown word
    "",
]


def images():
    rng = np.random.default_rng(0)
    sizes = [(40, 50), (64, 33), (32, 32), (8, 8)]
    pictures = [Image.fromarray(rng.integers(0, 256, (*s, 3), dtype=np.uint8)) for s in sizes]
    return [*pictures, Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8))]  # gray


def hf_model(directory):
    from transformers import AutoModel

    return AutoModel.from_pretrained(directory, local_files_only=True).eval()


def hf_pixels(directory, pictures):
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True)
    return processor(images=pictures, return_tensors="pt")["pixel_values"]


def reference(directory, kind):
    """get_text_features / get_image_features as Hugging Face's own pipeline computes them."""
    model = hf_model(directory)
    inputs = hf_text_inputs(directory, TEXTS, siglip=kind == "siglip")
    if kind == "siglip":  # SigLIP's processor gives no attention mask: padding is read
        inputs = {"input_ids": inputs["input_ids"]}
    with torch.no_grad():
        text = features(model.get_text_features(**inputs))
        image = features(model.get_image_features(pixel_values=hf_pixels(directory, images())))
    return text, image


@pytest.fixture(scope="module")
def built(hf_clip_dirs):
    return {kind: build_model(ModelConfig(pretrained=str(d))) for kind, d in hf_clip_dirs.items()}


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_embeddings_equal_the_checkpoints_features(hf_clip_dirs, built, kind):
    text, image = reference(hf_clip_dirs[kind], kind)
    model = built[kind]
    ours_text = model.encode(TEXTS, "text", normalize=False)
    ours_image = model.encode(images(), "image", normalize=False)
    np.testing.assert_allclose(ours_text, text.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours_image, image.numpy(), atol=1e-5, rtol=0)
    # Batches of one and length buckets give the same vectors.
    single = np.concatenate([model.encode([t], "text", normalize=False) for t in TEXTS])
    np.testing.assert_allclose(single, text.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_preprocessing_equals_the_hf_image_processor(hf_clip_dirs, built, kind):
    tower = built[kind].tower("image")
    ours = torch.stack([tower.preprocess(p) for p in images()])
    torch.testing.assert_close(ours, hf_pixels(hf_clip_dirs[kind], images()), atol=1e-6, rtol=0)


def test_text_ids_equal_the_hf_tokenizer(hf_clip_dirs, built):
    clip = built["clip"].tower("text")
    ids = clip.collate(TEXTS)
    hf = hf_text_inputs(hf_clip_dirs["clip"], TEXTS)
    mask = hf["attention_mask"].bool()
    assert torch.equal(ids != -1, mask) and torch.equal(ids[mask], hf["input_ids"][mask])
    assert ids.shape[1] == 16  # the third text is cut to the 16 positions, end token kept
    siglip = built["siglip"].tower("text")
    hf = hf_text_inputs(hf_clip_dirs["siglip"], TEXTS, siglip=True)
    assert torch.equal(siglip.collate(TEXTS), hf["input_ids"])  # padded to max_length


def test_embed_dim_temperature_and_bias_come_from_the_checkpoint(built):
    clip, siglip = built["clip"], built["siglip"]
    assert clip.config.embed_dim == 24 and siglip.config.embed_dim == 32
    assert clip.logit_scale.item() == pytest.approx(CLIP_SCALE, abs=1e-6)
    assert clip.config.init_temperature == pytest.approx(1 / 50, rel=1e-6)
    assert clip.logit_bias is None
    assert siglip.logit_scale.item() == pytest.approx(SIGLIP_SCALE, abs=1e-6)
    assert siglip.logit_bias.item() == pytest.approx(SIGLIP_BIAS, abs=1e-6)
    assert math.exp(siglip.logit_scale.item()) == pytest.approx(12.0, rel=1e-6)


def test_a_saved_model_loads_without_the_source_directory(hf_clip_dirs, tmp_path):
    for kind, source in hf_clip_dirs.items():
        copy = shutil.copytree(source, tmp_path / f"{kind}-source")
        model = build_model(ModelConfig(pretrained=str(copy)))
        model.save(str(tmp_path / kind))
        shutil.rmtree(copy)
        loaded = load(tmp_path / kind)
        for modality, inputs in (("text", TEXTS), ("image", images())):
            np.testing.assert_array_equal(
                loaded.encode(inputs, modality), model.encode(inputs, modality)
            )
        assert loaded.logit_scale.item() == model.logit_scale.item()
        assert loaded.config.pretrained is None
        assert loaded.config.towers["text"].name == "hf_clip_text"


def test_the_pretrained_line_round_trips_and_keeps_tower_settings(hf_clip_dirs, tmp_path):
    raw = {
        "model": {
            "pretrained": str(hf_clip_dirs["clip"]),
            "towers": {"image": {"name": "hf_clip_image", "lock": True}},
        }
    }
    config = ExperimentConfig.from_dict(raw)
    config.to_yaml(tmp_path / "c.yaml")
    assert ExperimentConfig.from_yaml(tmp_path / "c.yaml") == config
    model = build_model(config.model)
    assert model.tower("image").locked and not model.tower("text").locked
    trainable = {n for n, p in model.tower("image").named_parameters() if p.requires_grad}
    assert trainable == {"head.weight"}  # LiT: the visual projection trains, the rest is locked


def test_unlock_last_unfreezes_the_last_encoder_layers(hf_clip_dirs):
    tower = TowerConfig("hf_clip_text", lock=True, unlock_last=1)
    config = ModelConfig(pretrained=str(hf_clip_dirs["clip"]), towers={"text": tower})
    text = build_model(config).tower("text")
    names = {n for n, p in text.named_parameters() if p.requires_grad}
    last = {f"text_model.encoder.layers.1.{n}" for n, _ in text.layers()[1].named_parameters()}
    assert names == last | {"head.weight"} and len(text.layers()) == 2
    siglip = ModelConfig(
        pretrained=str(hf_clip_dirs["siglip"]),
        towers={"image": TowerConfig("hf_clip_image", lock=True, unlock_last=1)},
    )
    image = build_model(siglip).tower("image")
    names = {n for n, p in image.named_parameters() if p.requires_grad}
    assert names and all(n.startswith("vision_model.head.") for n in names)  # attention pooling


def test_a_conflicting_tower_is_refused(hf_clip_dirs):
    config = ModelConfig(
        pretrained=str(hf_clip_dirs["clip"]), towers={"text": TowerConfig("transformer")}
    )
    with pytest.raises(ConfigError, match=r"model\.towers\.text: 'transformer' conflicts"):
        build_model(config)


def test_missing_directory_and_files_say_what_to_put_where(hf_clip_dirs, tmp_path):
    with pytest.raises(NotFoundError, match="no such directory; put a CLIP or SigLIP"):
        build_model(ModelConfig(pretrained=str(tmp_path / "nowhere")))
    partial = shutil.copytree(hf_clip_dirs["clip"], tmp_path / "partial")
    (partial / "tokenizer.json").unlink()
    with pytest.raises(NotFoundError, match=r"tokenizer.json missing; .*save_pretrained"):
        build_model(ModelConfig(pretrained=str(partial)))
    shutil.copy(hf_clip_dirs["clip"] / "tokenizer.json", partial)
    (partial / "preprocessor_config.json").unlink()
    with pytest.raises(NotFoundError, match=r"preprocessor_config\.json missing"):
        build_model(ModelConfig(pretrained=str(partial)))
    (partial / "config.json").write_text('{"model_type": "bert"}')  # checked first
    with pytest.raises(JointspaceError, match="not a CLIP or SigLIP dual encoder"):
        build_model(ModelConfig(pretrained=str(partial)))


def test_hf_vision_wraps_any_vision_encoder_with_a_new_head(hf_clip_dirs):
    config = ModelConfig(
        embed_dim=16,
        towers={"image": TowerConfig("hf_vision", {"path": str(hf_clip_dirs["clip"])})},
    )
    tower = build_model(config).tower("image").eval()
    pixels = hf_pixels(hf_clip_dirs["clip"], images())
    with torch.no_grad():
        expected = hf_model(hf_clip_dirs["clip"]).vision_model(pixel_values=pixels).pooler_output
        torch.testing.assert_close(tower.pooled(pixels), expected, atol=1e-5, rtol=0)
        assert tower(pixels).shape == (len(pixels), 16)
    assert len(tower.layers()) == 2


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_activation_checkpointing_gives_the_same_gradients(hf_clip_dirs, kind):
    grads = []
    for enabled in (False, True):
        model = build_model(ModelConfig(pretrained=str(hf_clip_dirs[kind]))).train()
        for tower in model.towers.values():
            tower.checkpoint_layers(enabled)
        text = model.tower("text")
        image = model.tower("image")
        pixels = torch.stack([image.preprocess(p) for p in images()])
        loss = text(text.collate(TEXTS)).square().sum() + image(pixels).square().sum()
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-5, msg=name)
