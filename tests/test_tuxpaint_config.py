"""configs/tuxpaint.yaml: one space for image, text and audio, shipped with the package."""

import pytest

from jointspace.config import ConfigError, ExperimentConfig, builtin_config


def test_tuxpaint_config_binds_three_modalities():
    config = ExperimentConfig.from_yaml(builtin_config("tuxpaint"))
    assert ExperimentConfig.from_yaml("configs/tuxpaint.yaml") == config
    assert config.data.manifest == "builtin:tuxpaint"
    assert config.data.modalities == ["text", "image", "audio"]
    assert sorted(config.model.towers) == ["audio", "image", "text"]
    # the pretrained towers are locked (cached features); the audio tower trains from scratch
    assert config.model.towers["text"].lock and config.model.towers["image"].lock
    assert not config.model.towers["audio"].lock
    assert config.objectives[0].params.get("anchor") is None  # every pair by default


def test_tuxpaint_anchor_must_be_one_of_its_modalities(tmp_path):
    text = builtin_config("tuxpaint").read_text()
    path = tmp_path / "c.yaml"
    path.write_text(text.replace("{name: clip, params: {}", "{name: clip, params: {anchor: image}"))
    assert ExperimentConfig.from_yaml(path).objectives[0].params == {"anchor": "image"}
    path.write_text(text.replace("{name: clip, params: {}", "{name: clip, params: {anchor: video}"))
    with pytest.raises(ConfigError, match="anchor 'video'"):
        ExperimentConfig.from_yaml(path)
