"""``train_mvae`` on real digits: the saved run generates exactly what the trained model did,
text → image is recognised by a classifier of the test's own, and damaged runs are refused."""

import json
import shutil

import numpy as np
import pytest
import torch

from jointspace.config import apply_overrides, builtin_config
from jointspace.data.builtin.digits import WORDS
from jointspace.errors import ArtifactError, InputError, NotFoundError
from jointspace.generative.config import MvaeConfig
from jointspace.generative.rows import load_rows, open_rows
from jointspace.runs.mvae import MvaeRun, train_mvae
from jointspace.runs.outputs import OutputExistsError

# A third of the packaged run at a constant lr: 10 of 10 digits drawn right on seeds 0 and 1
# (at 15 epochs with the cosine decay the posterior still collapsed: 1-3 of 10).
SMALL = ["train.epochs=20", "train.min_lr_ratio=1", "train.progress=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    config = apply_overrides(MvaeConfig.from_yaml(builtin_config("mvae-digits")), SMALL)
    out = tmp_path_factory.mktemp("mvae") / "run"
    return config, out, train_mvae(config, out)


def test_the_run_directory_holds_config_weights_vocabulary_and_metrics(trained):
    config, out, result = trained
    names = {p.name for p in out.iterdir()}
    assert names == {".jointspace-output", "config.yaml", "mvae.safetensors", "mvae.json",
                     "vocab.json", "metrics.json"}  # fmt: skip
    assert MvaeConfig.from_yaml(out / "config.yaml") == config
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    assert len(metrics["history"]) == 20 and metrics["best_epoch"] is not None
    # Epochs before the KL weight reached 1 are never kept; the kept one has the least val loss.
    full = [r for r in metrics["history"] if r["beta"] >= 1.0]
    kept = metrics["history"][metrics["best_epoch"] - 1]
    assert kept["val_loss"] == min(r["val_loss"] for r in full)
    # The val loss is scored at KL weight 1 every epoch, so epochs compare: it fell.
    assert metrics["history"][-1]["val_loss"] < 0.9 * metrics["history"][0]["val_loss"]
    vocab = json.loads((out / "vocab.json").read_text())["words"]
    assert {"seven", "7", "eight", "nine"} <= set(vocab)  # resplit: 8 and 9 are trained on too


def test_the_opened_run_generates_what_the_trained_model_did(trained):
    _, out, result = trained
    run = MvaeRun.open(out)
    prompt = run.row("text", "a handwritten seven")
    expected = result.model.generate({"text": prompt}, "image")
    assert torch.equal(run.generate({"text": "a handwritten seven"}, "image"), expected)
    drawn = run.generate({"text": "seven"}, "image", samples=4, seed=3)
    assert drawn.shape == (4, 1, 8, 8) and torch.equal(
        drawn, run.generate({"text": "seven"}, "image", samples=4, seed=3)
    )
    assert not torch.equal(drawn[0], drawn[1])  # different draws of the posterior


def test_images_generated_from_text_are_recognised_as_their_digit(trained):
    config, out, _ = trained
    run = MvaeRun.open(out)
    manifest, splits = open_rows(config)
    train = load_rows(manifest, splits["train"], run.forms, desc="train", progress=False)
    pixels = train.inputs["image"].flatten(1).numpy()
    digits = np.array([WORDS.index(label) for label in train.labels])
    # The test's own classifier: the nearest mean image of each digit in the training rows.
    means = np.stack([pixels[digits == d].mean(0) for d in range(10)])
    generated = torch.cat([run.generate({"text": f"the digit {WORDS[d]}"}, "image")
                           for d in range(10)]).flatten(1).numpy()  # fmt: skip
    nearest = ((generated[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == np.arange(10)).sum() >= 7, nearest  # chance 1 of 10
    # And back: a real "seven" gives "seven" or "7" as its most probable digit word.
    seven = run.generate_rows({"image": train.inputs["image"][digits == 7][:1]}, "text")[0]
    top = [w for w, _ in run.top_words(seven, len(run.vocabulary))
           if w in WORDS or w.isdigit()]  # fmt: skip
    assert top[0] in ("seven", "7"), top[:4]


def test_bad_inputs_are_one_clear_error(trained):
    _, out, _ = trained
    run = MvaeRun.open(out)
    with pytest.raises(InputError, match="none of its words is in the vocabulary"):
        run.generate({"text": "zebra quartz"}, "image")
    with pytest.raises(InputError, match="no 'audio' modality; it has image, text"):
        run.generate({"audio": "x.wav"}, "image")
    with pytest.raises(InputError, match="no 'video' modality"):
        run.generate({"text": "seven"}, "video")
    with pytest.raises(InputError, match="nothing to generate from"):
        run.generate({}, "image")


def test_an_existing_or_foreign_out_dir_is_refused(trained, tmp_path):
    config, out, _ = trained
    before = (out / "mvae.safetensors").read_bytes()
    with pytest.raises(OutputExistsError, match="pass --force"):
        train_mvae(config, out)
    assert (out / "mvae.safetensors").read_bytes() == before
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not written by `jointspace mvae`"):
        train_mvae(config, foreign, force=True)
    assert (foreign / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "mvae.json").unlink(), NotFoundError),
        (lambda d: (d / "vocab.json").unlink(), "vocab.json: missing"),
        (lambda d: (d / "config.yaml").unlink(), "config.yaml: missing"),
        (
            lambda d: (d / "mvae.safetensors").write_bytes(b"\0" * 64),
            "do not match the fingerprint",
        ),
        (lambda d: (d / "mvae.json").write_text("{"), "mvae.json"),
        (lambda d: (d / "vocab.json").write_text('{"words": ["a"]}'), "text inputs have shape"),
    ],
)
def test_a_damaged_run_is_refused(trained, tmp_path, damage, message):
    _, out, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    damage(copy)
    kind = message if isinstance(message, type) else ArtifactError
    with pytest.raises(kind) as err:
        MvaeRun.open(copy)
    assert "\n" not in str(err.value)
    if isinstance(message, str):
        assert message in str(err.value)
