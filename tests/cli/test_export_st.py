"""`jointspace export RUN --to sentence-transformers|hf DIR`: the CLI's dispatch and messages."""

import json
import subprocess
import sys
import types

import numpy as np
import pytest
from typer.testing import CliRunner

from jointspace.cli import app
from jointspace.models import load
from tiny_bert import hf_text_model, tiny_bert

runner = CliRunner()
TEXTS = ["a red apple", "two cats", "the digit seven on a table"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("st-cli")
    directory = root / "run" / "model"
    hf_text_model(tiny_bert(root / "bert")).save(directory)
    return directory


def test_cli_exports_a_directory_sentence_transformers_loads_without_jointspace(
    model_dir, tmp_path
):
    out = tmp_path / "st"
    result = runner.invoke(
        app, ["export", str(model_dir.parent), "--to", "sentence-transformers", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "SentenceTransformer(" in result.output and "parity: cosine ≥ 1.0000" in result.output
    assert "image: skipped" in result.output and "--to onnx" in result.output
    # A fresh interpreter where jointspace cannot be imported, offline.
    script = (
        "import sys, json; sys.modules['jointspace'] = None\n"
        "from sentence_transformers import SentenceTransformer\n"
        f"model = SentenceTransformer({str(out)!r}, device='cpu')\n"
        f"print(json.dumps(model.encode({TEXTS!r}).tolist()))\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    got = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    expected = load(model_dir).encode(TEXTS, "text")
    assert np.min(np.sum(got * expected, axis=1)) >= 0.99999


def test_cli_refuses_a_scratch_text_tower_naming_onnx(tmp_path):
    from jointspace.config import ModelConfig, TowerConfig
    from jointspace.models.build import build_model

    text = TowerConfig("transformer", dict(width=16, depth=1, heads=2, max_len=16))
    build_model(ModelConfig(embed_dim=8, towers={"text": text}), corpus=TEXTS).save(tmp_path / "m")
    result = runner.invoke(
        app, ["export", str(tmp_path / "m"), "--to", "sentence-transformers", str(tmp_path / "st")]
    )
    assert result.exit_code == 1
    assert "jointspace export RUN --to onnx DIR" in " ".join(result.output.split())
    assert not (tmp_path / "st").exists()


def test_cli_hands_hf_to_export_hf(model_dir, tmp_path, monkeypatch):
    calls = []

    def export_hf(run, out_dir, *, force=False):
        calls.append((run.model_dir, out_dir, force))
        return out_dir

    fake = types.ModuleType("jointspace.runs.hf_export")
    fake.export_hf = export_hf
    monkeypatch.setitem(sys.modules, "jointspace.runs.hf_export", fake)
    result = runner.invoke(app, ["export", str(model_dir), "--to", "hf", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    assert calls == [(model_dir, tmp_path / "hf", False)]


def test_unknown_format_lists_all_three(model_dir, tmp_path):
    result = runner.invoke(app, ["export", str(model_dir), "--to", "st", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "choose one of onnx, sentence-transformers, hf" in result.output
