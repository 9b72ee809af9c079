"""`jointspace export RUN --to onnx DIR`: graphs onnxruntime runs alone, checked, not clobbering."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from jointspace.cli import app
from jointspace.config import ModelConfig, TowerConfig
from jointspace.models import load
from jointspace.models.build import build_model

runner = CliRunner()
TEXTS = ["a handwritten seven", "the digit three, written slowly with a thick pen", "9"]
FLOOR = 0.9999  # runs.onnx_export.PARITY_FLOOR, the floor docs/interop promises


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    text = TowerConfig("transformer", dict(width=32, depth=1, heads=2, max_len=16))
    image = TowerConfig("cnn", dict(image_size=16, widths=[8, 16]))
    model = build_model(
        ModelConfig(embed_dim=8, towers={"text": text, "image": image}), corpus=TEXTS
    )
    directory = tmp_path_factory.mktemp("export") / "model"
    model.save(directory)
    return directory


def export(model_dir, out, *extra):
    return runner.invoke(app, ["export", str(model_dir), "--to", "onnx", str(out), *extra])


def test_export_writes_graphs_that_onnxruntime_runs_from_the_spec_alone(model_dir, tmp_path):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    out = tmp_path / "onnx"
    result = export(model_dir, out)
    assert result.exit_code == 0, result.output
    spec = json.loads((out / "onnx.json").read_text())
    assert set(spec["towers"]) == {"text", "image"} and spec["embed_dim"] == 8
    model = load(model_dir)

    text = spec["towers"]["text"]
    assert text["parity"]["min_cosine"] >= FLOOR and text["parity"]["floor"] == FLOOR
    tokenizer = Tokenizer.from_file(str(out / text["preprocessing"]["tokenizer"]))
    ids = np.array([e.ids for e in tokenizer.encode_batch(TEXTS)], dtype=np.int64)
    length = text["input"]["shape"][1]
    if isinstance(length, int):  # a graph with a fixed length: pad to it
        pad = text["preprocessing"]["pad_id"]
        ids = np.pad(ids, ((0, 0), (0, length - ids.shape[1])), constant_values=pad)
    session = ort.InferenceSession(str(out / text["file"]), providers=["CPUExecutionProvider"])
    got = session.run(None, {text["input"]["name"]: ids})[0]
    expected = model.encode(TEXTS, "text")
    assert np.min(np.sum(got * expected, axis=1)) >= FLOOR
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)

    image = spec["towers"]["image"]
    pre = image["preprocessing"]
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), np.uint8))
    size = pre["image_size"]  # the documented steps, by hand: resize, centre crop, normalise
    resized = picture.resize((round(30 * size / 20), size), Image.Resampling.BICUBIC)
    left = (resized.size[0] - size) // 2
    array = np.asarray(resized.crop((left, 0, left + size, size)), np.float32) / 255
    array = (array - np.array(pre["mean"], np.float32)) / np.array(pre["std"], np.float32)
    pixels = array.transpose(2, 0, 1)[None].astype(np.float32)
    session = ort.InferenceSession(str(out / image["file"]), providers=["CPUExecutionProvider"])
    got = session.run(None, {image["input"]["name"]: pixels})[0]
    expected = model.encode([picture], "image")
    assert float(np.sum(got * expected)) >= FLOOR


def test_export_refuses_a_non_empty_dir_without_force(model_dir, tmp_path):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    for extra in ([], ["--force"]):
        result = export(model_dir, foreign, *extra)
        assert result.exit_code == 1 and "not written by `jointspace export`" in result.output
    assert [p.name for p in foreign.iterdir()] == ["mine.txt"]

    out = tmp_path / "onnx"
    assert export(model_dir, out).exit_code == 0
    before = (out / "text.onnx").read_bytes()
    result = export(model_dir, out)
    assert result.exit_code == 1 and "pass --force to replace it" in result.output
    assert export(model_dir, out, "--force").exit_code == 0
    assert (out / "text.onnx").read_bytes() == before  # the same graph again


def test_export_refuses_when_parity_fails_and_writes_nothing(model_dir, tmp_path, monkeypatch):
    from jointspace.runs import onnx_export

    monkeypatch.setattr(onnx_export, "PARITY_FLOOR", 1.5)  # no graph can reach it
    out = tmp_path / "onnx"
    result = export(model_dir, out)
    assert result.exit_code == 1
    assert "ONNX graph disagrees with PyTorch (worst cosine" in result.output
    assert "< 1.5" in result.output and "nothing was written" in result.output
    assert not out.exists()


def test_export_names_the_formats_it_knows(model_dir, tmp_path):
    result = runner.invoke(app, ["export", str(model_dir), "--to", "tflite", str(tmp_path / "x")])
    assert result.exit_code == 1 and "unknown format; choose one of onnx" in result.output


def _audio_model_dir(tmp_path, crop):
    torch.manual_seed(0)
    text = TowerConfig("transformer", dict(width=32, depth=1, heads=2, max_len=16))
    audio = TowerConfig(
        "audio_cnn", dict(sample_rate=8000, seconds=0.5, n_mels=16, widths=[8], crop=crop)
    )
    model = build_model(
        ModelConfig(embed_dim=8, towers={"text": text, "audio": audio}), corpus=TEXTS
    )
    model.save(tmp_path / f"model-{crop}")
    return tmp_path / f"model-{crop}"


def test_export_runs_the_audio_tower_and_records_its_crop(tmp_path):
    import onnxruntime as ort

    model_dir, out = _audio_model_dir(tmp_path, "energy"), tmp_path / "onnx"
    result = export(model_dir, out)
    assert result.exit_code == 0, result.output
    audio = json.loads((out / "onnx.json").read_text())["towers"]["audio"]
    assert audio["parity"]["min_cosine"] >= FLOOR
    pre = audio["preprocessing"]
    assert pre["crop"] == "energy" and "the window holding the most energy" in pre["steps"]
    # A 2 s clip, silent but for a tone in [1.0, 1.3) s: cropped to its loudest 0.5 s by hand.
    rate, length = pre["sample_rate"], round(pre["sample_rate"] * pre["seconds"])
    clip = np.zeros(2 * rate, np.float32)
    clip[rate : rate + 3 * rate // 10] = np.sin(np.arange(3 * rate // 10) * 0.3)
    energy = np.convolve(clip**2, np.ones(length), "valid")
    start = int(np.flatnonzero(energy == energy.max()).mean())  # the middle of the tie
    window = clip[start : start + length][None]
    session = ort.InferenceSession(str(out / audio["file"]), providers=["CPUExecutionProvider"])
    got = session.run(None, {audio["input"]["name"]: window})[0]
    expected = load(model_dir).encode([(clip, rate)], "audio")
    assert float(np.sum(got * expected)) >= FLOOR

    refused = tmp_path / "refused"
    result = export(_audio_model_dir(tmp_path, "windows"), refused)
    assert result.exit_code == 1 and "pools over windows (crop: windows)" in result.output
    assert not refused.exists()


def test_a_tower_the_exporter_rejects_is_one_line_and_nothing_is_written(tmp_path, monkeypatch):
    # Without the real-valued path the STFT is complex, which ONNX cannot express.
    model_dir = _audio_model_dir(tmp_path, "center")
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: False)
    out = tmp_path / "onnx"
    result = export(model_dir, out)
    assert result.exit_code == 1
    line = "error: the audio tower cannot be exported to ONNX: STFT does not currently support"
    assert result.output.startswith(line) and "[Caused by" not in result.output
    assert not out.exists()
