"""docs/interop.md runs as written on a tiny CLIP checkpoint: zero-shot, 3 fine-tunes, export."""

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hf_checkpoints import MAX_LEN, features
from jointspace.cli import app
from jointspace.data import build_dataset
from jointspace.evaluate.zeroshot import TEMPLATES
from jointspace.models import load

PAGE = Path(__file__).resolve().parents[2] / "docs" / "interop.md"
runner = CliRunner()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), flags=re.S)


def run_command(line: str) -> None:
    args = shlex.split(line)[1:]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"{line}\n{result.output}\n{result.exception!r}"


def by_hand_zero_shot(directory: Path) -> tuple[float, np.ndarray]:
    """Top-1 on the digits' held-out classes with transformers alone, as CLIP's paper does it."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    manifest = build_dataset("digits")
    rows = pd.read_csv(manifest)
    rows = rows[rows["split"] == "zeroshot"].drop_duplicates("image")
    labels = sorted(rows["label"].unique())
    model = AutoModel.from_pretrained(directory, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True)
    with torch.no_grad():
        classes = []
        for label in labels:
            prompts = [t.format(label) for t in TEMPLATES]
            batch = tokenizer(prompts, padding=True, truncation=True, max_length=MAX_LEN)
            tensors = {k: torch.tensor(v) for k, v in batch.items() if k != "token_type_ids"}
            text = torch.nn.functional.normalize(features(model.get_text_features(**tensors)))
            classes.append(torch.nn.functional.normalize(text.mean(0), dim=0))
        pictures = [Image.open(manifest.parent / p) for p in rows["image"]]
        pixels = processor(images=pictures, return_tensors="pt")["pixel_values"]
        images = torch.nn.functional.normalize(features(model.get_image_features(pixels)))
    scores = (images @ torch.stack(classes).T).numpy()
    targets = np.array([labels.index(label) for label in rows["label"]])
    return float((scores.argmax(1) == targets).mean()), scores


def jointspace_scores(directory: Path) -> np.ndarray:
    """The same image-by-class similarities from jointspace's model of the directory."""
    from jointspace.evaluate.zeroshot import class_embeddings

    manifest = build_dataset("digits")
    rows = pd.read_csv(manifest)
    rows = rows[rows["split"] == "zeroshot"].drop_duplicates("image")
    model = load(directory)
    classes = class_embeddings(model, sorted(rows["label"].unique()))
    return model.encode([str(manifest.parent / p) for p in rows["image"]], "image") @ classes.T


def test_the_interop_page_runs_as_written(hf_clip_dirs, tmp_path, monkeypatch):
    from transformers import AutoModel

    monkeypatch.chdir(tmp_path)
    clip = str(hf_clip_dirs["clip"])
    configs = [b for b in blocks("yaml") if b.startswith("# ")]
    assert len(configs) == 3
    for block in configs:
        name = block.splitlines()[0][2:].strip()
        (tmp_path / name).write_text(block.replace("CLIP_DIR", clip))
    lines = [
        line for b in blocks("bash") for line in b.splitlines() if line.startswith("jointspace")
    ]
    assert len(lines) == 6
    for line in lines:
        run_command(line.replace("CLIP_DIR", clip))

    # Zero-shot straight from the checkpoint = the same classification done with CLIPModel.
    before = json.loads((tmp_path / "zeroshot-before.json").read_text())
    accuracy, scores = by_hand_zero_shot(hf_clip_dirs["clip"])
    assert before["metrics"]["top1"] == pytest.approx(accuracy)
    np.testing.assert_allclose(jointspace_scores(hf_clip_dirs["clip"]), scores, atol=1e-5)

    source = AutoModel.from_pretrained(clip, local_files_only=True)
    lit = load("runs/clip-lit")
    vision = lit.tower("image").vision_model.state_dict()
    for key, value in source.vision_model.state_dict().items():
        assert torch.equal(vision[key], value), key  # LiT: the image tower stayed locked
    assert not torch.equal(lit.tower("text").head.weight, source.text_projection.weight)
    partial = load("runs/clip-partial").tower("text").text_model.state_dict()
    original = source.text_model.state_dict()
    assert torch.equal(
        partial["encoder.layers.0.mlp.fc1.weight"], original["encoder.layers.0.mlp.fc1.weight"]
    )
    assert not torch.equal(
        partial["encoder.layers.1.mlp.fc1.weight"], original["encoder.layers.1.mlp.fc1.weight"]
    )
    after = json.loads((tmp_path / "zeroshot-after.json").read_text())
    assert 0 <= after["metrics"]["top1"] <= 1

    # The export is a CLIPModel directory with the fine-tuned weights and the same features.
    for block in blocks("python"):
        if "exported-clip" in block:
            scope: dict = {}
            exec(block, scope)
            exported, tokenizer = scope["model"], scope["tokenizer"]
    run = load("runs/clip-full")
    texts = ["the digit eight", "a nine written by hand", "an image of zero"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = features(
            exported.get_text_features(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            )
        )
    np.testing.assert_allclose(run.encode(texts, "text", normalize=False), theirs, atol=1e-5)
    assert exported.logit_scale.item() == pytest.approx(run.logit_scale.item(), abs=1e-7)
