import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from jointspace import fit
from jointspace.config import ModelConfig, TowerConfig
from jointspace.data import read_manifest
from jointspace.models.build import build_model
from jointspace.models.feature_cache import FeatureCache

TEXTS = ["a red apple", "a vehicle on rails", "hello", "a red apple"]


def locked_model(seed=0, **image_options):
    torch.manual_seed(seed)
    image = TowerConfig("cnn", dict(image_size=16, widths=[8, 16]), **image_options)
    text = TowerConfig("transformer", dict(width=16, depth=1, heads=2, max_len=16), lock=True)
    return build_model(
        ModelConfig(embed_dim=8, towers={"text": text, "image": image}), corpus=TEXTS
    )


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        pixels = rng.integers(0, 255, size=(20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    return paths


def direct(tower, raws):
    with torch.no_grad():
        return tower.pooled(tower.collate([tower.preprocess(r) for r in raws]))


def test_hits_are_identical_and_survive_a_new_process(tmp_path, images):
    model = locked_model(lock=True)
    tower = model.towers["image"]
    cache = FeatureCache(tmp_path / "cache")
    first = cache.features(tower, images)
    torch.testing.assert_close(first, direct(tower, images), atol=1e-5, rtol=0)
    assert (cache.misses, cache.hits) == (5, 0)
    fresh = FeatureCache(tmp_path / "cache")  # reads the shards back from disk
    assert torch.equal(fresh.features(tower, images[::-1]), first.flip(0))
    assert (fresh.misses, fresh.hits) == (0, 5)


def test_text_towers_cache_too_and_repeated_inputs_compute_once(tmp_path):
    tower = locked_model(lock=True).towers["text"]
    cache = FeatureCache(tmp_path)
    features = cache.features(tower, TEXTS)
    assert cache.misses == 4 and len(cache._table(tower.fingerprint())) == 3
    assert torch.equal(features[0], features[3])
    torch.testing.assert_close(features, direct(tower, TEXTS), atol=1e-5, rtol=0)


def test_a_modified_image_or_model_misses(tmp_path, images):
    model = locked_model(lock=True)
    tower = model.towers["image"]
    cache = FeatureCache(tmp_path / "cache")
    before = cache.features(tower, images)
    pixels = np.asarray(Image.open(images[2])).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(images[2])
    after = FeatureCache(tmp_path / "cache")
    changed = after.features(tower, images)
    assert (after.misses, after.hits) == (1, 4)
    assert torch.equal(changed[[0, 1, 3, 4]], before[[0, 1, 3, 4]])
    assert not torch.equal(changed[2], before[2])
    torch.testing.assert_close(changed[2:3], direct(tower, images[2:3]), atol=1e-5, rtol=0)
    other = locked_model(seed=1, lock=True).towers["image"]
    assert other.fingerprint() != tower.fingerprint()
    after.features(other, images)
    assert after.misses == 1 + 5
    tower.load_state_dict(other.state_dict())  # new weights: the fingerprint follows them
    assert tower.fingerprint() == other.fingerprint()


def test_the_fingerprint_covers_preprocessing_but_not_the_head(tmp_path):
    a, b = locked_model(lock=True).towers["image"], locked_model(lock=True).towers["image"]
    assert a.fingerprint() == b.fingerprint()
    with torch.no_grad():
        b.head.weight.add_(1.0)
    b._fingerprint = None
    assert a.fingerprint() == b.fingerprint()
    b.transform.size = 12
    b._fingerprint = None
    assert a.fingerprint() != b.fingerprint()


def test_unfrozen_towers_and_damaged_shards(tmp_path, images):
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(ValueError, match="not frozen"):
        cache.features(locked_model(unlock_last=1).towers["image"], images)
    tower = locked_model(lock=True).towers["image"]
    cache.features(tower, images)
    (shard,) = (tmp_path / "cache").glob("*/shard-*.safetensors")
    shard.write_bytes(b"garbage")
    again = FeatureCache(tmp_path / "cache")
    torch.testing.assert_close(
        again.features(tower, images), direct(tower, images), atol=1e-5, rtol=0
    )
    assert again.misses == 5 and shard.with_suffix(".damaged").is_file()


def test_inputs_without_a_content_key_are_refused(tmp_path):
    tower = locked_model(lock=True).towers["image"]
    with pytest.raises(TypeError, match="cannot cache features of a dict input"):
        FeatureCache(tmp_path).features(tower, [{"not": "an image"}])


def test_many_small_shards_are_merged(tmp_path, images, monkeypatch):
    monkeypatch.setattr("jointspace.models.feature_cache.MAX_SHARDS", 2)
    tower = locked_model(lock=True).towers["image"]
    cache = FeatureCache(tmp_path)
    for path in images:
        cache.features(tower, [path])
    assert len(list(tmp_path.glob("*/shard-*.safetensors"))) <= 2
    reread = FeatureCache(tmp_path)
    reread.features(tower, images)
    assert reread.misses == 0
    # Another process's entry, written after this one loaded its table, survives a merge.
    other, extra = FeatureCache(tmp_path), images[0].with_name("extra.png")
    Image.new("RGB", (20, 20), "red").save(extra)
    other.features(tower, [extra])
    Image.new("RGB", (20, 20), "blue").save(images[0].with_name("more.png"))
    cache.features(tower, [images[0].with_name("more.png")])  # triggers a merge
    last = FeatureCache(tmp_path)
    last.features(tower, [extra, *images])
    assert last.misses == 0


def frozen_image_config(feature_cache):
    config = tiny_config(batch_size=256, max_steps=6, warmup_steps=1)
    config.model.towers["image"].lock = True
    config.data.augment = False
    config.data.val_split = None
    config.train.feature_cache = feature_cache
    return config


def test_training_from_cached_features_matches_training_through_the_backbone(
    tmp_path, digits_manifest
):
    plain = fit(frozen_image_config(None), tmp_path / "plain", manifest=digits_manifest)
    cached = fit(frozen_image_config(str(tmp_path / "c")), tmp_path / "a", manifest=digits_manifest)
    expected = [r["loss"] for r in plain.history]
    assert [r["loss"] for r in cached.history] == pytest.approx(expected, abs=1e-4)
    images = len(set(read_manifest(digits_manifest).split("train").column("image")))
    (directory,) = (tmp_path / "c").iterdir()  # one tower fingerprint
    assert len(FeatureCache(tmp_path / "c")._table(directory.name.split("-", 1)[1])) == images
    shards = set(directory.iterdir())
    again = fit(frozen_image_config(str(tmp_path / "c")), tmp_path / "b", manifest=digits_manifest)
    assert set(directory.iterdir()) == shards  # a later run computes nothing
    assert [r["loss"] for r in again.history] == [r["loss"] for r in cached.history]


def tamper_shard(directory, change):
    """Rewrite the one shard under ``directory`` with ``change(keys, tensors)`` applied."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    (shard,) = directory.glob("*/shard-*.safetensors")
    with safe_open(str(shard), framework="pt") as f:
        keys = json.loads(f.metadata()["keys"])
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    keys, tensors = change(keys, tensors)
    save_file(tensors, str(shard), metadata={"keys": json.dumps(keys)})
    return shard


@pytest.mark.parametrize(
    "change",
    [
        # one row fewer than keys: today "zip() argument 2 is shorter than argument 1"
        lambda keys, t: (keys, {name: v[:-1] for name, v in t.items()}),
        # rows reordered under unchanged keys: today silently wrong features
        lambda keys, t: (
            keys,
            {name: v.flip(0) if name == "features" else v for name, v in t.items()},
        ),
        # keys reordered under unchanged rows
        lambda keys, t: (keys[::-1], t),
    ],
    ids=["short", "permuted-rows", "permuted-keys"],
)
def test_a_shard_with_wrong_or_reordered_rows_is_set_aside_and_recomputed(tmp_path, images, change):
    tower = locked_model(lock=True).towers["image"]
    FeatureCache(tmp_path / "cache").features(tower, images)
    shard = tamper_shard(tmp_path / "cache", change)
    again = FeatureCache(tmp_path / "cache")
    features = again.features(tower, images)
    torch.testing.assert_close(features, direct(tower, images), atol=1e-5, rtol=0)
    assert again.misses == 5 and shard.with_suffix(".damaged").is_file()
    fresh = FeatureCache(tmp_path / "cache")  # the recomputed shard is intact
    assert torch.equal(fresh.features(tower, images), features) and fresh.misses == 0
