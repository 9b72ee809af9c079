"""``--set KEY.PATH=VALUE`` overrides and the YAML 1.2 numbers every config read accepts."""

import pytest

from jointspace.config import ConfigError, ExperimentConfig, apply_overrides
from jointspace.yaml_loader import load_yaml


def test_each_form_sets_its_field_with_the_declared_type():
    base = ExperimentConfig()
    config = apply_overrides(
        base,
        [
            "train.lr=3e-4",
            "train.batch_size=256",
            "model.towers.text.lock=true",
            "objectives.0.name=siglip",
            "objectives[0].weight=5e-1",
            "train.betas.1=0.95",
            "data.modalities=[text, image]",
            "model.towers.image.params={widths: [8, 16], image_size: 16}",
            "data.val_split=",  # empty: null
            "train.max_steps=null",
            "data.manifest=builtin:emoji",
        ],
    )
    assert config.train.lr == 3e-4 and isinstance(config.train.lr, float)
    assert config.train.batch_size == 256 and isinstance(config.train.batch_size, int)
    assert config.model.towers["text"].lock is True
    assert config.objectives[0].name == "siglip" and config.objectives[0].weight == 0.5
    assert config.train.betas == (0.9, 0.95)
    assert config.model.towers["image"].params == {"widths": [8, 16], "image_size": 16}
    assert config.data.val_split is None and config.train.max_steps is None
    assert config.data.manifest == "builtin:emoji"
    # The given config is left as it was: overrides make a new one.
    assert base.train.lr == 1e-3 and base.objectives[0].name == "clip"


def test_an_index_one_past_the_end_appends_and_later_overrides_win():
    config = apply_overrides(
        ExperimentConfig(),
        ["objectives.1.name=siglip", "objectives.1.weight=0.25", "train.lr=1", "train.lr=2e-3"],
    )
    assert [(o.name, o.weight) for o in config.objectives] == [("clip", 1.0), ("siglip", 0.25)]
    assert config.train.lr == 0.002


def test_a_new_mapping_key_is_created_where_the_field_is_a_mapping():
    config = apply_overrides(ExperimentConfig(), ["objectives.0.params.temperature=5e-2"])
    assert config.objectives[0].params == {"temperature": 0.05}


def test_overridden_config_round_trips_through_yaml(tmp_path):
    config = apply_overrides(ExperimentConfig(), ["train.lr=2e-5", "eval.ks=[1, 3]"])
    config.to_yaml(tmp_path / "c.yaml")
    assert ExperimentConfig.from_yaml(tmp_path / "c.yaml") == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.lrr=1"], r"^--set train.lrr=1: unknown key 'train.lrr'; known keys: .*\blr\b"),
        (["trian.lr=1"], r"^--set trian.lr=1: unknown key 'trian'"),
        (["train.lr=fast"], r"^--set train.lr=fast: train.lr: expected float, got 'fast'$"),
        # The error names the override that caused it, not the last one given.
        (["train.lr=fast", "train.epochs=2"], r"^--set train.lr=fast: train.lr: expected float"),
        (["train.batch_size=0"], r"^--set train.batch_size=0: .*must be at least 1, got 0"),
        (["train.epochs=2.5"], r"^--set train.epochs=2.5: train.epochs: expected int, got 2.5"),
        (["model.towers.text.lock=maybe"], r"towers.text.lock: expected true or false"),
        (["objectives.0.weight=heavy"], r"objectives\[0\].weight: expected float, got 'heavy'"),
        (["objectives.2.name=clip"], r"objectives\[2\]: a list of 1 items takes an index 0..0"),
        (["train.lr.x=1"], r"^--set train.lr.x=1: train.lr is a value \(0.001\), not a section"),
        (["data.modalities.0.x=1"], r"data.modalities\[0\] is a value \('text'\)"),
        (["train.lr"], r"^--set train.lr: expected KEY.PATH=VALUE"),
        (["=3"], r"expected KEY.PATH=VALUE"),
        (["train..lr=1"], r"'train..lr' has an empty key"),
        (["train.lr=[1"], r"^--set train.lr=\[1: the value is not valid YAML"),
        (["data.modalities=[text]"], r"^--set data.modalities=\[text\]: model.towers.image: "),
        (["train.precision=fp8"], r"train.precision: must be one of fp32, bf16, fp16, got 'fp8'"),
    ],
)
def test_bad_overrides_are_config_errors_naming_path_and_value(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(ExperimentConfig(), overrides)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2e-3", 0.002),
        ("1e5", 100000.0),
        ("-1E-4", -0.0001),
        ("+3e2", 300.0),
        ("2E+3", 2000.0),
        (".5e1", 5.0),
        ("1.5e-3", 0.0015),
        ("0.25", 0.25),
    ],
)
def test_yaml_12_numbers_read_as_floats(text, value):
    loaded = load_yaml(f"x: {text}")["x"]
    assert isinstance(loaded, float) and loaded == value


@pytest.mark.parametrize(
    ("text", "value"), [("12", 12), ("1_000", 1000), ("e5", "e5"), ("2e", "2e"), ("1e5x", "1e5x")]
)
def test_other_scalars_read_as_before(text, value):
    loaded = load_yaml(f"x: {text}")["x"]
    assert loaded == value and type(loaded) is type(value)


def test_config_files_read_exponent_floats_even_in_free_form_params(tmp_path):
    # Typed fields coerced `2e-3` before; a part's params (free-form) kept it as a string.
    path = tmp_path / "c.yaml"
    path.write_text(
        "train:\n  lr: 2e-3\nobjectives:\n  - name: clip\n    params: {temperature: 1e-2}\n"
    )
    config = ExperimentConfig.from_yaml(path)
    assert config.train.lr == 0.002
    assert config.objectives[0].params["temperature"] == 0.01
    assert isinstance(config.objectives[0].params["temperature"], float)
