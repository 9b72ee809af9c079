"""`--to onnx` on towers from Hugging Face CLIP/SigLIP checkpoints: graphs fed from onnx.json."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from jointspace.cli import app
from jointspace.config import ModelConfig
from jointspace.models import build_model, load

FLOOR = 0.9999  # runs.onnx_export.PARITY_FLOOR
TEXTS = ["the digit seven written by hand", "a cat", "an icon of a dog on a red background"]


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_hf_towers_export_to_onnx_and_run_from_the_spec(hf_clip_dirs, tmp_path, kind):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    model_dir = tmp_path / "model"
    build_model(ModelConfig(pretrained=str(hf_clip_dirs[kind]))).save(model_dir)
    out = tmp_path / "onnx"
    result = CliRunner().invoke(app, ["export", str(model_dir), "--to", "onnx", str(out)])
    assert result.exit_code == 0, result.output
    spec = json.loads((out / "onnx.json").read_text())
    model = load(model_dir)

    text = spec["towers"]["text"]
    assert text["parity"]["min_cosine"] >= FLOOR
    pre = text["preprocessing"]
    encoded = [e.ids for e in Tokenizer.from_file(str(out / pre["tokenizer"])).encode_batch(TEXTS)]
    length = text["input"]["shape"][1]
    length = length if isinstance(length, int) else max(map(len, encoded))
    assert kind == "clip" or length == pre["max_length"]  # SigLIP reads max_len tokens, always
    ids = np.full((len(TEXTS), length), pre["pad_id"], dtype=np.int64)
    for row, tokens in enumerate(encoded):
        ids[row, : len(tokens)] = tokens
    session = ort.InferenceSession(str(out / text["file"]), providers=["CPUExecutionProvider"])
    got = session.run(None, {text["input"]["name"]: ids})[0]
    assert np.min(np.sum(got * model.encode(TEXTS, "text"), axis=1)) >= FLOOR

    image = spec["towers"]["image"]
    assert image["parity"]["min_cosine"] >= FLOOR
    height, width = image["input"]["shape"][2:]
    assert image["preprocessing"]["image_size"] == [height, width]
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)) for _ in "ab"]
    tower = model.tower("image")
    pixels = torch.stack([tower.preprocess(p) for p in pictures]).numpy()
    session = ort.InferenceSession(str(out / image["file"]), providers=["CPUExecutionProvider"])
    got = session.run(None, {image["input"]["name"]: pixels})[0]
    assert np.min(np.sum(got * model.encode(pictures, "image"), axis=1)) >= FLOOR
