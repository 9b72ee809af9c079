"""A run as one object: config never None, model and fingerprint loaded once, bound index."""

import shutil

import numpy as np
import pytest

from conftest import tiny_config
from jointspace.config import ConfigError, ExperimentConfig
from jointspace.index.build import ModelMismatchError
from jointspace.models.feature_cache import FeatureCache
from jointspace.models.io import model_fingerprint
from jointspace.runs import Run, load
from jointspace.runs.fit import fit


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, digits_manifest):
    config = tiny_config(batch_size=256, max_steps=10)
    config.data.val_split = None
    config.train.feature_cache = str(tmp_path_factory.mktemp("features"))
    out = tmp_path_factory.mktemp("run") / "run"
    fit(config, out, manifest=digits_manifest)
    return out


def test_a_run_owns_its_recorded_config_and_data(run_dir, digits_manifest):
    run = Run.open(run_dir)
    assert run.recorded and run.config == ExperimentConfig.from_yaml(run_dir / "config.yaml")
    assert run.model_dir == run_dir / "model" and run.dir == run_dir
    assert run.config.data.manifest == str(digits_manifest.resolve())
    test = run.manifest(split="test")
    assert len(test) > 0 and set(test.splits()) == {"test"}
    assert Run.open(run_dir / "model").config == run.config  # the model directory finds it too


def test_model_and_fingerprint_load_once_with_the_runs_feature_cache(run_dir, monkeypatch):
    import jointspace.runs.run as module

    loads, hashes = [], []
    real_load, real_hash = module.load_model, module.model_fingerprint
    monkeypatch.setattr(module, "load_model", lambda d: loads.append(d) or real_load(d))
    monkeypatch.setattr(module, "model_fingerprint", lambda d: hashes.append(d) or real_hash(d))
    run = Run.open(run_dir)
    assert run.model is run.model and run.fingerprint == run.fingerprint
    assert len(loads) == 1 and len(hashes) == 1
    cache = run.model.feature_cache
    assert isinstance(cache, FeatureCache) and str(cache.root) == run.config.train.feature_cache
    assert run.fingerprint == model_fingerprint(run_dir)


def test_jointspace_load_is_the_runs_model(run_dir):
    import jointspace

    assert jointspace.load is load
    model, same = load(run_dir), Run.open(run_dir).model
    assert str(model.feature_cache.root) == str(same.feature_cache.root)
    texts = ["a handwritten seven", "the digit 3"]
    np.testing.assert_array_equal(model.encode(texts, "text"), same.encode(texts, "text"))


def test_a_bare_model_has_default_config_and_needs_data(run_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(run_dir / "model", bare)
    run = Run.open(bare)
    assert not run.recorded and run.config == ExperimentConfig()
    assert run.model.feature_cache is not None  # the default ("auto") cache, as in training
    with pytest.raises(ConfigError, match=r"records no manifest .* pass --data"):
        run.manifest()


def test_the_run_opens_only_indexes_its_model_built(run_dir, digits_manifest, tmp_path):
    run = Run.open(run_dir)
    uri = f"faiss://{tmp_path / 'index'}"
    manifest = run.manifest(split="test", modalities=["image"])
    built = run.build_index(manifest, "image", uri, progress=False)
    assert built.info["model_fingerprint"] == run.fingerprint
    built.close()
    opened = run.open_index(uri)
    assert len(opened) == len(set(manifest.column("image")))
    opened.close()
    other = tiny_config(batch_size=256, max_steps=2, seed=1)
    other.data.val_split = None
    fit(other, tmp_path / "other", manifest=digits_manifest)
    with pytest.raises(ModelMismatchError, match="built by model"):
        Run.open(tmp_path / "other").open_index(uri)
