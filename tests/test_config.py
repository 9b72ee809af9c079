import pytest

from jointspace.config import ConfigError, ExperimentConfig, builtin_config


def test_default_config_round_trips_through_yaml(tmp_path):
    config = ExperimentConfig()
    path = tmp_path / "c.yaml"
    config.to_yaml(path)
    assert ExperimentConfig.from_yaml(path) == config


def test_digits_config_round_trips_and_matches_repo_copy(tmp_path):
    config = ExperimentConfig.from_yaml(builtin_config("digits"))
    assert config.eval.relevance == "label"
    assert config.model.towers["image"].name == "cnn"
    config.to_yaml(tmp_path / "again.yaml")
    assert ExperimentConfig.from_yaml(tmp_path / "again.yaml") == config
    assert ExperimentConfig.from_yaml("configs/digits.yaml") == config


def test_unknown_key_is_named_with_its_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'train.epoch'"):
        ExperimentConfig.from_yaml(path)


def test_wrong_type_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  batch_size: big\n")
    with pytest.raises(ConfigError, match=r"train.batch_size: expected int"):
        ExperimentConfig.from_yaml(path)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found"):
        ExperimentConfig.from_yaml("nope.yaml")
