"""A saved model says what it is; transformers and sentence-transformers name `jointspace export`.

The hint lives in config.json's ``model_type``, the key both read first.
"""

import json

import pytest
import torch

from jointspace.config import ModelConfig, TowerConfig
from jointspace.models import load
from jointspace.models.build import build_model
from jointspace.models.io import MODEL_TYPE, model_fingerprint

HINT = "jointspace export RUN --to sentence-transformers DIR"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    image = TowerConfig("cnn", dict(image_size=16, widths=[8, 16]))
    directory = tmp_path_factory.mktemp("model") / "model"
    build_model(ModelConfig(embed_dim=8, towers={"image": image})).save(directory)
    return directory


def test_config_names_jointspace_and_the_export_command(model_dir):
    meta = json.loads((model_dir / "config.json").read_text())
    assert meta["format"] == "jointspace-model"
    assert meta["model_type"] == MODEL_TYPE
    assert MODEL_TYPE.startswith("jointspace (") and HINT in MODEL_TYPE


def test_transformers_automodel_error_points_to_jointspace_export(model_dir):
    from transformers import AutoConfig, AutoModel

    for loader in (AutoModel, AutoConfig):
        with pytest.raises(ValueError, match="does not recognize this architecture") as err:
            loader.from_pretrained(str(model_dir), local_files_only=True)
        assert "model type `jointspace (" in str(err.value) and HINT in str(err.value)


def test_sentence_transformer_error_points_to_jointspace_export(model_dir):
    from sentence_transformers import SentenceTransformer

    with pytest.raises(ValueError) as err:
        SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    assert HINT in str(err.value)


def test_a_model_saved_before_model_type_still_loads_with_the_same_fingerprint(model_dir, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    meta = json.loads((old / "config.json").read_text())
    del meta["model_type"]  # as every model saved before this key existed
    (old / "config.json").write_text(json.dumps(meta, indent=2))
    fingerprint = model_fingerprint(old)
    images = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(
        load(old).encode(images, "image", output="torch"),
        load(model_dir).encode(images, "image", output="torch"),
    )
    assert model_fingerprint(old) == fingerprint  # loading never rewrites an old folder
    assert "model_type" not in json.loads((old / "config.json").read_text())
