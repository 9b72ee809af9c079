"""The packaged spoken-digits MVAE config, shrunk: trained on a few real voiced clips, the word
generated from a test clip's audio is the right digit far more often than chance."""

import shutil

import pandas as pd
import pytest
import torch

from jointspace.config import builtin_config
from jointspace.data.builtin import spoken_digits
from jointspace.data.builtin.digits import WORDS
from jointspace.generative.config import MvaeConfig
from jointspace.generative.rows import load_rows, open_rows
from jointspace.runs.mvae import MvaeRun, train_mvae

CLIPS, TRAIN = 20, 16  # per word: the first 16 clips train, the other 4 test

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest.fixture(scope="module")
def few_clips(tmp_path_factory):
    """20 clips of each word, voiced as builtin:spoken-digits voices them (same voices, speeds)."""
    root = tmp_path_factory.mktemp("few-spoken")
    (root / "clips").mkdir()
    rows = [r for r in spoken_digits.manifest_rows() if int(r["id"]) % 80 < CLIPS]
    for row in rows:
        spoken_digits.speak(shutil.which("espeak-ng"), row, root / row["audio"])
        row["split"] = "train" if int(row["id"]) % 80 < TRAIN else "test"
    columns = ["id", "audio", "text", "label", "split"]
    pd.DataFrame(rows)[columns].to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def test_audio_to_text_beats_chance_on_a_few_spoken_digits(few_clips, tmp_path):
    config = MvaeConfig.from_yaml(builtin_config("mvae-spoken-digits"))
    config.data.val_split, config.data.resplit = None, []
    config.model.latent, config.model.hidden = 8, 64
    config.train.epochs, config.train.batch_size, config.train.progress = 120, 32, False
    result = train_mvae(config, tmp_path / "run", data=few_clips)
    assert result.metrics["rows"] == {"train": 10 * TRAIN, "test": 10 * (CLIPS - TRAIN)}
    run = MvaeRun.open(tmp_path / "run")
    manifest, splits = open_rows(config, few_clips)
    test = load_rows(manifest, splits["test"], run.forms, desc="test", progress=False)
    words = run.generate_rows({"audio": test.inputs["audio"]}, "text")
    vocab = run.vocabulary
    score = torch.zeros(len(test), 10)  # per digit: its word's probability plus its numeral's
    for d, w in enumerate(WORDS):
        for token in {w, str(d)} & set(vocab):
            score[:, d] += words[:, vocab.index(token)]
    right = sum(int(d) == WORDS.index(w) for d, w in zip(score.argmax(1), test.labels, strict=True))
    # Of 40 test clips, chance 4; seeds 0-3 gave 21, 15, 19, 22 right.
    assert right >= 12
