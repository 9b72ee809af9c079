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


def load_yaml(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return ExperimentConfig.from_yaml(path)


def test_numeric_strings_become_the_declared_type(tmp_path):
    # PyYAML reads `2e-3` (no dot) as a string: how PyTorch users write learning rates.
    config = load_yaml(
        tmp_path,
        "train:\n  lr: 2e-3\n  batch_size: '64'\n  progress: 'false'\nrerank:\n  lr: 1E-4\n",
    )
    assert config.train.lr == 0.002 and isinstance(config.train.lr, float)
    assert config.train.batch_size == 64 and config.train.progress is False
    assert config.rerank.lr == 0.0001


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train:\n  lr: fast\n", r"c.yaml: train.lr: expected float, got 'fast'"),
        ("train:\n  epochs: 2.5\n", r"train.epochs: expected int, got 2.5"),
        ("train:\n  betas: [0.9, fast]\n", r"train.betas\[1\]: expected float, got 'fast'"),
        ("eval:\n  ks: [1, five]\n", r"eval.ks\[1\]: expected int, got 'five'"),
        ("model:\n  towers:\n    text: {name: transformer, lock: maybe}\n", r"towers.text.lock"),
        (
            "objectives:\n  - {name: clip, weight: heavy}\n",
            r"objectives\[0\].weight: expected float",
        ),
        ("train:\n  batch_size: 0\n", r"train.batch_size: must be at least 1, got 0"),
        ("train:\n  precision: fp8\n", r"train.precision: must be one of fp32, bf16, fp16"),
        ("- 1\n- 2\n", r"c.yaml: config: expected a mapping, got \[1, 2\]"),
        ("model:\n  towers:\n    text: {params: {}}\n", r"model.towers.text.name: required"),
    ],
)
def test_wrong_values_are_named_with_file_field_and_value(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_yaml(tmp_path, text)


def test_every_typed_field_of_every_section_is_checked(tmp_path):
    # Generic: for each scalar field of each config dataclass, junk is refused by name.
    import dataclasses
    import typing

    from jointspace import config as cfg

    sections = {
        "data": cfg.DataConfig,
        "model": cfg.ModelConfig,
        "train": cfg.TrainConfig,
        "eval": cfg.EvalConfig,
        "rerank": cfg.RerankConfig,
    }
    checked = 0
    for section, cls in sections.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            scalar = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
            if scalar[0] not in (int, float, bool):
                continue
            with pytest.raises(ConfigError, match=rf"{section}\.{f.name}: expected .*'junk'"):
                load_yaml(tmp_path, f"{section}:\n  {f.name}: junk\n")
            checked += 1
    assert checked >= 30
