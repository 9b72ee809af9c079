"""MVAE on digits: are images generated from text recognised as the right digit?

Trains ``src/jointspace/configs/mvae-digits.yaml`` (``builtin:digits``, 8×8 images + captions)
once per seed and measures, with a classifier trained independently (scikit-learn logistic
regression on the real images of the train split, at the same 8×8 resolution):
- text → image: images decoded from the posterior mean of each digit's prompt under each of the
  dataset's 10 caption templates (100 images), from the posterior mean of "a handwritten <word>"
  (10 images; the captions never put the word form after "a handwritten"), and from 20
  posterior draws of "a handwritten <word>" per digit (200 images), classified; chance 10 %;
- the classifier on the real test images (its reference accuracy) and on their reconstructions;
- image → text: for each test image, the digit whose word plus numeral is most probable in the
  generated word distribution (chance 10 %).
Prints a table, writes benchmarks/results/mvae_digits.json and docs/images/mvae-digits.png
(rows: real test images, their reconstructions, images generated from "zero" … "nine").
Usage: python benchmarks/mvae_digits.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from jointspace.atomic import write_bytes_atomic
from jointspace.config import apply_overrides, builtin_config
from jointspace.data.builtin.digits import TEMPLATES, WORDS
from jointspace.generative.config import MvaeConfig
from jointspace.generative.pictures import grid_png
from jointspace.generative.rows import load_rows, open_rows
from jointspace.report.markdown import markdown_table
from jointspace.runs.mvae import MvaeRun, train_mvae

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mvae_digits.json"
GRID = ROOT / "docs" / "images" / "mvae-digits.png"
DRAWS = 20  # posterior draws per digit from "a handwritten <word>"


def unique_images(rows, split_rows) -> tuple[np.ndarray, np.ndarray]:
    """One ``[N, 64]`` row per distinct image of a split (its captions share it) and its digit."""
    seen: dict[str, int] = {}
    for i, row in enumerate(split_rows):
        seen.setdefault(row["image"], i)
    keep = list(seen.values())
    pixels = rows.inputs["image"][keep].flatten(1).numpy()
    digits = np.array([WORDS.index(rows.labels[i]) for i in keep])
    return pixels, digits


def named_digit(words: torch.Tensor, vocab: list[str]) -> np.ndarray:
    """Per row of generated word distributions ``[N, vocab]``, the digit whose word plus numeral
    ("seven" + "7") is most probable."""
    score = torch.zeros(len(words), 10)
    for d in range(10):
        for token in (WORDS[d], str(d)):
            if token in vocab:
                score[:, d] += words[:, vocab.index(token)]
    return score.argmax(1).numpy()


def print_summary(runs: list[dict], keys: list[str]) -> dict[str, float]:
    """Print each measure per seed, its mean and chance (10 %) as a table; return the means."""
    mean = {k: statistics.mean(r[k] for r in runs) for k in keys}
    header = ["measure", *(f"seed {r['seed']}" for r in runs), "mean", "chance"]
    table = [[k, *(f"{100 * r[k]:.1f}" for r in runs), f"{100 * mean[k]:.1f}", "10.0"]
             for k in keys]  # fmt: skip
    print(markdown_table(header, table))
    return mean


def measure(seed: int, out_dir: Path, overrides: list[str]) -> dict:
    config = apply_overrides(MvaeConfig.from_yaml(builtin_config("mvae-digits")), overrides)
    config.train.seed, config.train.progress = seed, False
    started = time.perf_counter()
    metrics = train_mvae(config, out_dir).metrics
    seconds = time.perf_counter() - started
    run = MvaeRun.open(out_dir)
    manifest, splits = open_rows(config)
    sets = {s: load_rows(manifest, splits[s], run.forms, desc=s, progress=False)
            for s in ("train", "test")}  # fmt: skip
    train_x, train_y = unique_images(sets["train"], splits["train"])
    test_x, test_y = unique_images(sets["test"], splits["test"])
    classifier = LogisticRegression(max_iter=5000, C=1.0).fit(train_x, train_y)

    def recognised(images: torch.Tensor, digits: np.ndarray) -> float:
        return float((classifier.predict(images.flatten(1).numpy()) == digits).mean())

    # text → image: the posterior mean of each template's prompt, and draws of one prompt
    prompts = [(t.format(d=d, w=WORDS[d]), d) for d in range(10) for t in TEMPLATES]
    means = torch.cat([run.generate({"text": p}, "image") for p, _ in prompts])
    draws = torch.cat(
        [run.generate({"text": f"a handwritten {WORDS[d]}"}, "image", samples=DRAWS, seed=d)
         for d in range(10)]
    )  # fmt: skip
    draw_digits = np.repeat(np.arange(10), DRAWS)
    handwritten = torch.cat(
        [run.generate({"text": f"a handwritten {WORDS[d]}"}, "image") for d in range(10)]
    )
    # image → image and image → text over the distinct test images
    rows = {"image": torch.from_numpy(test_x).view(-1, *run.model.specs["image"].shape)}
    recon = run.generate_rows(rows, "image")
    words = run.generate_rows(rows, "text")
    result = {
        "seed": seed,
        "train_seconds": round(seconds, 1),
        "best_epoch": metrics["best_epoch"],
        "test_loss": metrics["test"]["mvae_loss"],
        "train_images": len(train_x),
        "test_images": len(test_x),
        "classifier_on_real_test": float((classifier.predict(test_x) == test_y).mean()),
        "classifier_on_reconstructions": recognised(recon, test_y),
        "text_to_image_mean": recognised(means, np.array([d for _, d in prompts])),
        "text_to_image_draws": recognised(draws, draw_digits),
        "text_to_image_handwritten_word_mean": recognised(handwritten, np.arange(10)),
        "text_to_image_draws_per_digit": [
            recognised(draws[draw_digits == d], draw_digits[draw_digits == d]) for d in range(10)
        ],
        "image_to_text": float((named_digit(words, run.vocabulary) == test_y).mean()),
    }
    if seed == 0:  # the picture: one test image per digit, its reconstruction, text → image
        first = [int(np.flatnonzero(test_y == d)[0]) for d in range(10)]
        generated = torch.cat([run.generate({"text": WORDS[d]}, "image") for d in range(10)])
        picture = grid_png(
            [rows["image"][first], recon[first], generated],
            ["real (test)", "reconstructed", 'from text "zero"…'],
            cell=40,
        )
        GRID.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(GRID, picture)
    return result


def run_seeds(doc: str, measure) -> tuple[argparse.Namespace, list[dict]]:
    """Parse ``--seeds`` and ``--set``, then ``measure(seed, run_dir, overrides)`` per seed, each
    in a fresh temporary run directory."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="config override KEY=VALUE, as `jointspace mvae --set`")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(measure(seed, Path(tmp) / "run", args.sets))
            print(f"seed {seed}: trained in {runs[-1]['train_seconds']} s", flush=True)
    return args, runs


def write_results(path: Path, payload: dict) -> None:
    """``payload`` as indented JSON at ``path`` (atomically), its folder made if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, (json.dumps(payload, indent=2) + "\n").encode())


def main() -> None:
    args, runs = run_seeds(__doc__, measure)
    keys = [
        "classifier_on_real_test",
        "classifier_on_reconstructions",
        "text_to_image_mean",
        "text_to_image_handwritten_word_mean",
        "text_to_image_draws",
        "image_to_text",
    ]
    mean = print_summary(runs, keys)
    per_digit = [[WORDS[d], *(f"{100 * r['text_to_image_draws_per_digit'][d]:.0f}" for r in runs)]
                 for d in range(10)]  # fmt: skip
    print(markdown_table(["digit", *(f"seed {r['seed']}" for r in runs)], per_digit))
    payload = {
        "config": "src/jointspace/configs/mvae-digits.yaml",
        "overrides": args.sets,
        "draws_per_digit": DRAWS,
        "prompts_per_digit": len(TEMPLATES),
        "machine": platform.platform(),
        "runs": runs,
        "mean": mean,
    }
    write_results(RESULTS, payload)
    print(f"wrote {RESULTS.relative_to(ROOT)} and {GRID.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
