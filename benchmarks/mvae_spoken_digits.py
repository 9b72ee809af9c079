"""MVAE on spoken digits: is the audio generated from text recognised as the right word?

Trains ``src/jointspace/configs/mvae-spoken-digits.yaml`` (``builtin:spoken-digits``: the words
zero–nine voiced by espeak-ng, as log-mel frames, + captions) once per seed and measures, with a
classifier trained independently (scikit-learn logistic regression on the real log-mels of the
train split, in the same input form):
- audio → text: for each test clip, the digit whose word plus numeral is most probable in the word
  distribution generated from its audio posterior (chance 10 %);
- text → audio: log-mels decoded from the posterior mean of each digit's caption under each of the
  dataset's 5 caption templates (50), from the posterior mean of the bare word "zero" … "nine"
  (10), and from 20 posterior draws of the bare word per digit (200), classified; chance 10 %;
- the classifier on the real test log-mels (its reference) and on their reconstructions.
Prints a table and writes benchmarks/results/mvae_spoken_digits.json.
Usage: python benchmarks/mvae_spoken_digits.py [--seeds 0 1 2] [--set KEY=VALUE]
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch
from mvae_digits import named_digit, print_summary, run_seeds, write_results
from sklearn.linear_model import LogisticRegression

from jointspace.config import apply_overrides, builtin_config
from jointspace.data.builtin.digits import WORDS
from jointspace.data.builtin.spoken_digits import TEMPLATES
from jointspace.generative.config import MvaeConfig
from jointspace.generative.rows import load_rows, open_rows
from jointspace.runs.mvae import MvaeRun, train_mvae

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mvae_spoken_digits.json"
DRAWS = 20  # posterior draws per digit from its bare word
CLASSIFIER_C = 0.1  # L2 strength of the judge: 1,504 log-mel inputs, ~550 training clips


def measure(seed: int, out_dir: Path, overrides: list[str]) -> dict:
    config = apply_overrides(MvaeConfig.from_yaml(builtin_config("mvae-spoken-digits")), overrides)
    config.train.seed, config.train.progress = seed, False
    started = time.perf_counter()
    metrics = train_mvae(config, out_dir).metrics
    seconds = time.perf_counter() - started
    run = MvaeRun.open(out_dir)
    manifest, splits = open_rows(config)
    sets = {s: load_rows(manifest, splits[s], run.forms, desc=s, progress=False)
            for s in ("train", "test")}  # fmt: skip
    train_y = np.array([WORDS.index(w) for w in sets["train"].labels or []])
    test_y = np.array([WORDS.index(w) for w in sets["test"].labels or []])
    test_audio = sets["test"].inputs["audio"]
    classifier = LogisticRegression(max_iter=5000, C=CLASSIFIER_C)
    classifier.fit(sets["train"].inputs["audio"].flatten(1).numpy(), train_y)

    def recognised(mels: torch.Tensor, digits: np.ndarray) -> float:
        return float((classifier.predict(mels.flatten(1).numpy()) == digits).mean())

    prompts = [(t.format(d=d, w=WORDS[d]), d) for d in range(10) for t in TEMPLATES]
    means = torch.cat([run.generate({"text": p}, "audio") for p, _ in prompts])
    bare = torch.cat([run.generate({"text": WORDS[d]}, "audio") for d in range(10)])
    draws = torch.cat(
        [run.generate({"text": WORDS[d]}, "audio", samples=DRAWS, seed=d) for d in range(10)]
    )
    draw_digits = np.repeat(np.arange(10), DRAWS)
    words = run.generate_rows({"audio": test_audio}, "text")
    return {
        "seed": seed,
        "train_seconds": round(seconds, 1),
        "rows": metrics["rows"],
        "best_epoch": metrics["best_epoch"],
        "test_loss": metrics["test"]["mvae_loss"],
        "classifier_on_real_test": recognised(test_audio, test_y),
        "classifier_on_reconstructions": recognised(
            run.generate_rows({"audio": test_audio}, "audio"), test_y
        ),
        "audio_to_text": float((named_digit(words, run.vocabulary) == test_y).mean()),
        "text_to_audio_template_mean": recognised(means, np.array([d for _, d in prompts])),
        "text_to_audio_word_mean": recognised(bare, np.arange(10)),
        "text_to_audio_draws": recognised(draws, draw_digits),
        "text_to_audio_draws_per_digit": [
            recognised(draws[draw_digits == d], draw_digits[draw_digits == d]) for d in range(10)
        ],
    }


def main() -> None:
    args, runs = run_seeds(__doc__, measure)
    keys = [
        "classifier_on_real_test",
        "classifier_on_reconstructions",
        "audio_to_text",
        "text_to_audio_template_mean",
        "text_to_audio_word_mean",
        "text_to_audio_draws",
    ]
    mean = print_summary(runs, keys)
    payload = {
        "config": "src/jointspace/configs/mvae-spoken-digits.yaml",
        "overrides": args.sets,
        "classifier": f"LogisticRegression(C={CLASSIFIER_C}) on the train split's real log-mels",
        "draws_per_digit": DRAWS,
        "prompts_per_digit": len(TEMPLATES),
        "machine": platform.platform(),
        "runs": runs,
        "mean": mean,
    }
    write_results(RESULTS, payload)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
