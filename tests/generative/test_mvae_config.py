"""MvaeConfig: the packaged config loads, round-trips YAML, takes overrides, refuses bad values."""

import pytest

from jointspace.config import ConfigError, apply_overrides, builtin_config
from jointspace.generative.config import MvaeConfig
from jointspace.generative.forms import Vocabulary, words
from jointspace.generative.rows import resplit_share


def test_the_packaged_config_round_trips_and_takes_overrides(tmp_path):
    config = MvaeConfig.from_yaml(builtin_config("mvae-digits"))
    assert MvaeConfig.from_yaml("configs/mvae-digits.yaml") == config  # the symlink
    assert config.data.resplit == ["zeroshot"] and config.modalities["text"].weight == 10.0
    path = tmp_path / "c.yaml"
    config.to_yaml(path)
    assert MvaeConfig.from_yaml(path) == config
    changed = apply_overrides(config, ["model.latent=4", "modalities.image.size=12"])
    assert changed.model.latent == 4 and changed.modalities["image"].size == 12
    assert config.model.latent == 8  # a new config; the original is unchanged


def test_likelihoods_default_by_modality_and_bad_values_are_named():
    config = MvaeConfig.from_dict({"modalities": {"image": {}, "text": {}, "audio": {}}})
    assert {m: s.likelihood for m, s in config.modalities.items()} == {
        "image": "bernoulli", "text": "multinomial", "audio": "gaussian"
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"modalities\.video: unknown modality"):
        MvaeConfig.from_dict({"modalities": {"video": {}}})
    with pytest.raises(
        ConfigError, match=r"modalities\.text\.likelihood: 'bernoulli' does not fit"
    ):
        MvaeConfig.from_dict({"modalities": {"text": {"likelihood": "bernoulli"}}})
    with pytest.raises(ConfigError, match=r"train\.kl_warmup_steps: must be at least 0"):
        MvaeConfig.from_dict({"train": {"kl_warmup_steps": -1}})
    with pytest.raises(ConfigError, match=r"data\.resplit: 'val' is already"):
        MvaeConfig.from_dict({"data": {"resplit": ["val"]}})


def test_the_vocabulary_counts_known_words_most_frequent_first():
    assert words("A hand-drawn 7, twice: 7") == ["a", "hand", "drawn", "7", "twice", "7"]
    vocab = Vocabulary.build(["the seven", "a seven", "the 7 seven"], max_size=3)
    assert vocab.words == ["seven", "the", "7"]  # ties broken alphabetically, then cut to 3
    assert vocab.counts("Seven SEVEN the unknown").tolist() == [2.0, 1.0, 0.0]


def test_resplit_shares_are_stable_and_near_70_15_15():
    shares = [resplit_share(f"images/{i:04d}.png") for i in range(2000)]
    assert shares == [resplit_share(f"images/{i:04d}.png") for i in range(2000)]
    counts = [shares.count(k) / len(shares) for k in range(3)]
    assert abs(counts[0] - 0.70) < 0.04 and abs(counts[1] - 0.15) < 0.03
