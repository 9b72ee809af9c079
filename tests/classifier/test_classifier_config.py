"""ClassifyConfig round-trips YAML, takes --set overrides and refuses contradictions."""

import pytest

from jointspace.classifier.config import ClassifyConfig
from jointspace.config import ConfigError, apply_overrides


def test_round_trip(tmp_path):
    config = ClassifyConfig.from_dict({"towers": {"run": "runs/digits"}, "head": {"name": "gated"}})
    path = tmp_path / "c.yaml"
    config.to_yaml(path)
    assert ClassifyConfig.from_yaml(path) == config


def test_overrides_are_checked_as_a_whole():
    config = ClassifyConfig.from_dict({"towers": {"run": "r"}})
    changed = apply_overrides(config, ["head.name=concat", "train.lr=3e-4"])
    assert (changed.head.name, changed.train.lr) == ("concat", 3e-4)
    with pytest.raises(ConfigError, match=r"towers\.model"):
        apply_overrides(config, ["towers.model={}"])  # now both run and model


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, r"exactly one of towers\.run"),
        ({"towers": {"model": {}}, "data": {"modalities": ["audio"]}}, "'audio' has no tower"),
        ({"towers": {"run": "r", "inputs": "pixels"}}, r"towers\.inputs"),
        ({"towers": {"run": "r"}, "data": {"modalities": []}}, "empty"),
    ],
)
def test_bad_configs_are_clear_errors(raw, message):
    with pytest.raises(ConfigError, match=message):
        ClassifyConfig.from_dict(raw)
