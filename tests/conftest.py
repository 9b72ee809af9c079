import os

import pytest

from jointspace.config import ExperimentConfig, builtin_config


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Datasets and cached features go to a temporary directory, never the user's cache."""
    previous = os.environ.get("JOINTSPACE_CACHE")
    os.environ["JOINTSPACE_CACHE"] = str(tmp_path_factory.mktemp("jointspace-cache"))
    yield
    if previous is None:
        os.environ.pop("JOINTSPACE_CACHE")
    else:
        os.environ["JOINTSPACE_CACHE"] = previous


@pytest.fixture(scope="session")
def digits_manifest(tmp_path_factory):
    """The built-in digits dataset, built once per test session into a temporary cache."""
    from jointspace.data import build_dataset

    return build_dataset("digits", root=tmp_path_factory.mktemp("cache"))


def tiny_config(**train) -> ExperimentConfig:
    """The demo config shrunk to a model that trains in seconds."""
    config = ExperimentConfig.from_yaml(builtin_config("digits"))
    config.model.towers["text"].params = dict(width=32, depth=1, heads=2, max_len=16, dropout=0.1)
    config.model.towers["image"].params = dict(image_size=16, widths=[16, 32])
    config.train.progress = False
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


@pytest.fixture(scope="session")
def served_app(tmp_path_factory, digits_manifest):
    """A search app over a briefly trained digits model and its FAISS image index."""
    from jointspace.data import read_manifest
    from jointspace.index.build import build_index
    from jointspace.models import load
    from jointspace.models.io import model_fingerprint
    from jointspace.runs.fit import fit
    from jointspace.serve import create_app

    root = tmp_path_factory.mktemp("serve")
    config = tiny_config(batch_size=256, max_steps=30)
    config.data.val_split = None
    fit(config, root / "run", manifest=digits_manifest)
    uri = f"faiss://{root / 'index'}"
    manifest = read_manifest(digits_manifest)
    build_index(
        load(root / "run"), model_fingerprint(root / "run"), manifest, "image", uri, progress=False
    ).close()
    return create_app(root / "run", uri, max_upload_bytes=50_000), manifest


@pytest.fixture(scope="session")
def hf_clip_dirs(tmp_path_factory):
    """Tiny random CLIP and SigLIP checkpoints saved by transformers: {"clip": DIR, ...}."""
    from hf_checkpoints import make_clip, make_siglip

    root = tmp_path_factory.mktemp("hf")
    return {"clip": make_clip(root / "clip"), "siglip": make_siglip(root / "siglip")}
