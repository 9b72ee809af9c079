import json

import numpy as np
import pytest
import torch
from PIL import Image

from jointspace import build_model, load
from jointspace.config import ModelConfig, TowerConfig
from jointspace.errors import ArtifactError

CORPUS = ["a handwritten 7", "the digit seven", "the number 3", "a scanned digit three"] * 5


def make_model(image_tower: str) -> torch.nn.Module:
    torch.manual_seed(0)
    params = {
        "cnn": dict(image_size=16, widths=[8, 16]),
        "vit": dict(image_size=16, patch_size=4, width=32, depth=1, heads=2),
    }[image_tower]
    config = ModelConfig(
        embed_dim=16,
        towers={
            "text": TowerConfig("transformer", dict(width=32, depth=1, heads=2, pooling="cls")),
            "image": TowerConfig(image_tower, params),
        },
    )
    return build_model(config, corpus=CORPUS)


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("image_tower", ["cnn", "vit"])
def test_save_load_gives_identical_embeddings(tmp_path, images, image_tower):
    model = make_model(image_tower)
    model.save(tmp_path / "model")
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == ["config.json", "model.safetensors", "tokenizer.json"]
    loaded = load(tmp_path / "model")
    texts = ["a handwritten 7", "the number 3", "an unseen word"]
    np.testing.assert_array_equal(model.encode(texts, "text"), loaded.encode(texts, "text"))
    np.testing.assert_array_equal(model.encode(images, "image"), loaded.encode(images, "image"))


def test_encode_is_normalised_and_batch_independent(images):
    model = make_model("cnn")
    whole = model.encode(images, "image", batch_size=5)
    pieces = model.encode(images, "image", batch_size=2)
    np.testing.assert_allclose(whole, pieces, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-6)
    raw = model.encode(images, "image", normalize=False, output="torch")
    assert isinstance(raw, torch.Tensor) and raw.shape == (5, 16)
    pil = model.encode([Image.open(p) for p in images], "image")
    np.testing.assert_allclose(whole, pil, atol=1e-6)


def test_padding_does_not_change_a_text_embedding():
    model = make_model("cnn")
    alone = model.encode(["the number 3"], "text")
    padded = model.encode(["the number 3", "a scanned digit three and more words"], "text")
    np.testing.assert_allclose(alone[0], padded[0], atol=1e-5)


def test_unknown_modality_and_mismatched_tower_are_clear_errors():
    model = make_model("cnn")
    with pytest.raises(KeyError, match="no 'audio' tower"):
        model.encode(["x"], "audio")
    config = ModelConfig(towers={"image": TowerConfig("transformer")})
    with pytest.raises(ValueError, match="encodes 'text', but the config uses it for 'image'"):
        build_model(config, corpus=CORPUS)


def test_load_rejects_weights_that_do_not_match(tmp_path):
    make_model("cnn").save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["model"]["embed_dim"] = 8
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="weights do not match"):
        load(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="no jointspace model"):
        load(tmp_path / "nothing")
