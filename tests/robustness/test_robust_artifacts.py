"""Bad configs and tampered artifacts: each ends in one ConfigError/ArtifactError line.

Through the CLI the same inputs exit 1 with a single ``error:`` line and no traceback.
"""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from jointspace.cli import app
from jointspace.config import ConfigError, ExperimentConfig, ModelConfig, TowerConfig
from jointspace.errors import ArtifactError
from jointspace.models.build import build_model
from jointspace.models.io import load
from jointspace.train import checkpoint as ckpt
from jointspace.train.logs import read_log

BAD_CONFIGS = {
    "lr-word": "train:\n  lr: fast\n",
    "lr-list": "train:\n  lr: [1, 2]\n",
    "lr-negative": "train:\n  lr: -0.1\n",
    "lr-nan": "train:\n  lr: .nan\n",
    "epochs-zero": "train:\n  epochs: 0\n",
    "epochs-fraction": "train:\n  epochs: 2.5\n",
    "batch-negative": "train:\n  batch_size: -8\n",
    "batch-string": "train:\n  batch_size: big\n",
    "precision-enum": "train:\n  precision: fp8\n",
    "relevance-enum": "eval:\n  relevance: everything\n",
    "ks-zero": "eval:\n  ks: [0, 5]\n",
    "ks-word": "eval:\n  ks: [1, five]\n",
    "betas-short": "train:\n  betas: [0.9]\n",
    "betas-word": "train:\n  betas: [0.9, high]\n",
    "progress-word": "train:\n  progress: maybe\n",
    "dropout-above-one": "rerank:\n  dropout: 1.5\n",
    "embed-dim-zero": "model:\n  embed_dim: 0\n",
    "tower-no-name": "model:\n  towers:\n    text: {params: {}}\n",
    "tower-lock-word": "model:\n  towers:\n    text: {name: transformer, lock: sometimes}\n",
    "unlock-negative": "model:\n  towers:\n    text: {name: transformer, unlock_last: -1}\n",
    "objective-weight-word": "objectives:\n  - {name: clip, weight: heavy}\n",
    "objectives-not-list": "objectives: clip\n",
    "unknown-key": "train:\n  epoch: 3\n",
    "unknown-section": "trainer:\n  epochs: 3\n",
    "section-not-mapping": "train: 5\n",
    "top-level-list": "- 1\n- 2\n",
    "top-level-scalar": "just some words\n",
    "broken-yaml": "train: {lr: 0.1\n",
    "towers-not-mapping": "model:\n  towers: [text, image]\n",
    "modalities-not-list": "data:\n  modalities: text\n",
}


def write_config(tmp_path, name, text):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", BAD_CONFIGS)
def test_bad_config_is_one_config_error_naming_the_file(tmp_path, name):
    path = write_config(tmp_path, name, BAD_CONFIGS[name])
    with pytest.raises(ConfigError) as caught:
        ExperimentConfig.from_yaml(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value).strip()


def test_binary_junk_as_a_config_is_a_config_error(tmp_path):
    path = tmp_path / "junk.yaml"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match=r"junk\.yaml"):
        ExperimentConfig.from_yaml(path)


@pytest.mark.parametrize("name", ["lr-word", "batch-negative", "top-level-list", "unknown-key"])
def test_bad_config_through_the_cli_is_one_error_line(tmp_path, name):
    path = write_config(tmp_path, name, BAD_CONFIGS[name])
    result = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and result.output.count("error:") == 1
    assert not (tmp_path / "run").exists()  # a refused command changes nothing


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    torch.manual_seed(0)
    config = ModelConfig(
        embed_dim=8,
        towers={
            "text": TowerConfig("transformer", dict(width=16, depth=1, heads=2, max_len=8)),
            "image": TowerConfig("cnn", dict(image_size=16, widths=[8, 16])),
        },
    )
    directory = tmp_path_factory.mktemp("model") / "model"
    build_model(config, corpus=["a red apple", "a blue car"] * 4).save(str(directory))
    return directory


def set_tensor(path, value):
    tensors = load_file(str(path))
    name = sorted(tensors)[0]
    tensors[name] = torch.full_like(tensors[name], value)
    save_file(tensors, str(path))


def edit_json(path, change):
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


TAMPERED_MODELS = {
    "weights-truncated": lambda d: (d / "model.safetensors").write_bytes(
        (d / "model.safetensors").read_bytes()[:300]
    ),
    "weights-garbage": lambda d: (d / "model.safetensors").write_bytes(b"\x00garbage" * 10),
    "weights-empty": lambda d: (d / "model.safetensors").write_bytes(b""),
    "weights-missing": lambda d: (d / "model.safetensors").unlink(),
    "weights-nan": lambda d: set_tensor(d / "model.safetensors", float("nan")),
    "weights-inf": lambda d: set_tensor(d / "model.safetensors", float("inf")),
    "config-list": lambda d: (d / "config.json").write_text("[1, 2, 3]"),
    "config-broken": lambda d: (d / "config.json").write_text('{"format": "jointspace-model",'),
    "config-binary": lambda d: (d / "config.json").write_bytes(b"\xff\xfe\x00junk"),
    "config-other-format": lambda d: edit_json(d / "config.json", lambda m: m.update(format="x")),
    "config-model-list": lambda d: edit_json(d / "config.json", lambda m: m.update(model=[])),
    "config-unknown-key": lambda d: edit_json(
        d / "config.json", lambda m: m["model"].update(colour="red")
    ),
    "config-embed-dim-changed": lambda d: edit_json(
        d / "config.json", lambda m: m["model"].update(embed_dim=4)
    ),
    "tokenizer-garbage": lambda d: (d / "tokenizer.json").write_text("not json at all"),
    "tokenizer-wrong-json": lambda d: (d / "tokenizer.json").write_text('{"model": 5}'),
    "tokenizer-missing": lambda d: (d / "tokenizer.json").unlink(),
}


@pytest.mark.parametrize("name", TAMPERED_MODELS)
def test_tampered_model_is_one_artifact_error_naming_the_file(tmp_path, saved_model, name):
    import shutil

    directory = tmp_path / "model"
    shutil.copytree(saved_model, directory)
    TAMPERED_MODELS[name](directory)
    with pytest.raises(ArtifactError) as caught:
        load(directory)
    message = str(caught.value)
    assert str(directory) in message and "\n" not in message.strip()


@pytest.mark.parametrize("name", ["weights-nan", "config-list", "tokenizer-garbage"])
def test_tampered_model_through_the_cli_is_one_error_line(tmp_path, saved_model, name):
    import shutil

    directory = tmp_path / "model"
    shutil.copytree(saved_model, directory)
    TAMPERED_MODELS[name](directory)
    result = CliRunner().invoke(app, ["eval", str(directory), "--data", "builtin:digits"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1


CHECKPOINT_DAMAGE = {
    "state-broken": lambda c: (c / "trainer_state.json").write_text('{"step": '),
    "state-list": lambda c: (c / "trainer_state.json").write_text("[]"),
    "state-no-step": lambda c: (c / "trainer_state.json").write_text('{"optimizer": {}}'),
    "optimizer-truncated": lambda c: (c / "optimizer.safetensors").write_bytes(b"\x08\x00"),
    "objective-garbage": lambda c: (c / "objective.safetensors").write_bytes(b"nonsense!"),
    "frozen-json-junk": lambda c: (c / "frozen.json").write_text('{"towers": 3}'),
}


@pytest.mark.parametrize("name", CHECKPOINT_DAMAGE)
def test_damaged_checkpoint_is_an_artifact_error_and_skipped(tmp_path, saved_model, name):
    import shutil

    directory = tmp_path / "checkpoints"
    good, bad = directory / "step-0000004", directory / "step-0000008"
    for step, path in ((4, good), (8, bad)):
        shutil.copytree(saved_model, path)
        for file in ("optimizer.safetensors", "objective.safetensors"):
            save_file({"rng_state": torch.get_rng_state()}, str(path / file))
        state = {"step": step, "num_rows": 8, "total_steps": 8, "optimizer": {}}
        (path / "trainer_state.json").write_text(json.dumps(state))
    CHECKPOINT_DAMAGE[name](bad)
    with pytest.raises(ArtifactError, match="step-0000008"):
        ckpt.check_checkpoint(bad)
    assert ckpt.latest_checkpoint(directory) == good


@pytest.mark.parametrize(
    "text",
    [
        '{"step": 1}\nnot json\n{"step": 3}\n',
        '{"step": 1}\n{"loss": 2.0}\n',
        '{"step": 1}\n[1, 2]\n',
        '{"step": "one"}\n',
    ],
)
def test_damaged_metrics_log_is_an_artifact_error_with_the_line(tmp_path, text):
    path = tmp_path / "metrics.jsonl"
    path.write_text(text)
    with pytest.raises(ArtifactError, match=r"metrics.jsonl, line \d: damaged"):
        read_log(path)


def test_a_half_written_last_log_line_is_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert [r["step"] for r in read_log(path)] == [1, 2]
