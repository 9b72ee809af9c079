"""hf_vision: any local AutoModel vision encoder, its pooled output and a new projection head."""

import numpy as np
import pytest
import torch
from PIL import Image

from jointspace.config import ModelConfig, TowerConfig
from jointspace.models import build_model, load


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("vit")
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        image_size=32, patch_size=8,
    )  # fmt: skip
    ViTModel(config).save_pretrained(directory)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


def pictures():
    rng = np.random.default_rng(2)
    return [Image.fromarray(rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)) for _ in range(3)]


@pytest.mark.parametrize("pooling", ["pooler", "cls", "mean"])
def test_pooled_features_equal_the_models_own(vit_dir, tmp_path, pooling):
    from transformers import AutoImageProcessor, AutoModel

    params = {"path": str(vit_dir), "pooling": pooling}
    config = ModelConfig(embed_dim=8, towers={"image": TowerConfig("hf_vision", params)})
    model = build_model(config).eval()
    tower = model.tower("image")
    pixels = AutoImageProcessor.from_pretrained(vit_dir)(images=pictures(), return_tensors="pt")
    pixels = pixels["pixel_values"]
    ours = torch.stack([tower.preprocess(p) for p in pictures()])
    torch.testing.assert_close(ours, pixels, atol=1e-6, rtol=0)
    with torch.no_grad():
        out = AutoModel.from_pretrained(vit_dir).eval()(pixel_values=pixels)
        expected = {
            "pooler": out.pooler_output,
            "cls": out.last_hidden_state[:, 0],
            "mean": out.last_hidden_state.mean(1),
        }[pooling]
        torch.testing.assert_close(tower.pooled(pixels), expected, atol=1e-5, rtol=0)
    assert model.encode(pictures(), "image").shape == (3, 8) and len(tower.layers()) == 3
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(
        load(tmp_path / "m").encode(pictures(), "image"), model.encode(pictures(), "image")
    )
