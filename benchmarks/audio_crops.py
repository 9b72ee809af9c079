"""Audio crops side by side: one audio–text config trained once per ``crop`` of the audio tower.

- ``spoken-digits``: configs/spoken-digits.yaml (``--digits-epochs``; the config says 15) with
  only ``model.towers.audio.params.crop`` changed; test split, label relevance, both directions.
- ``tuxpaint``: the 131 stamps of builtin:tuxpaint that have a sound (real recorded effects that
  start at 0 s and fade). Its own splits leave 12 test clips, so every clip is scored once by
  ``--folds``-fold cross-validation, folds grouped by description (equal descriptions share a
  fold). Query: a held-out clip; gallery: the 122 distinct descriptions of the 131 rows; relevant:
  the descriptions of the clip's category (``label``), since a held-out description's words were
  never read in training. spoken-digits' config with a narrower audio CNN (widths 16, 32, 64,
  to fit minutes on 2 CPU cores), ``--tux-epochs`` epochs, batch 32, no validation split.
- The share of each clip's energy inside the ``seconds`` window every crop keeps at evaluation.

Same seed (``--seed``, default 0) and data order for every crop; the folds do not depend on it.
Prints tables, writes benchmarks/results/audio_crops.json (``--out``).
Usage: python benchmarks/audio_crops.py [--crops center,start,onset,energy,windows]
       [--datasets spoken-digits,tuxpaint] [--digits-epochs 3] [--tux-epochs 25] [--folds 4]
       [--seed 0] [--out PATH]
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from jointspace.atomic import write_text_atomic
from jointspace.config import ExperimentConfig, dumps_json
from jointspace.data import build_dataset, load_audio, load_manifest
from jointspace.data.audio_crops import CROPS, crop_start, energy_fraction
from jointspace.evaluate.metrics import chance_metrics, retrieval_metrics
from jointspace.evaluate.retrieval import evaluate_model
from jointspace.runs import load
from jointspace.runs.fit import fit

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "spoken-digits.yaml"
KS = (1, 5, 10)


def with_crop(config: ExperimentConfig, crop: str, epochs: int, seed: int) -> ExperimentConfig:
    config = copy.deepcopy(config)
    config.train.seed = seed
    config.model.towers["audio"].params["crop"] = crop
    config.train.epochs = epochs
    config.train.progress = False
    config.train.checkpoint_every = 10_000  # no mid-run checkpoints: the run is minutes
    return config


def spoken_digits(crops: list[str], epochs: int, seed: int, work: Path) -> dict:
    config = ExperimentConfig.from_yaml(CONFIG)
    manifest = build_dataset("spoken-digits")
    test = load_manifest(manifest, config.data.modalities, split="test")
    rows = {}
    for crop in crops:
        started = time.perf_counter()
        fit(with_crop(config, crop, epochs, seed), work / f"digits-{crop}", manifest=manifest)
        seconds = time.perf_counter() - started
        metrics = evaluate_model(load(work / f"digits-{crop}"), test, config.eval)
        rows[crop] = {"train_seconds": round(seconds, 1), **metrics}
        print(
            f"spoken-digits {crop}: mean recall {100 * metrics['primary']:.1f} in {seconds:.0f} s",
            flush=True,
        )
    return {"epochs": epochs, "test_rows": len(test), "relevance": "label", "crops": rows}


def tuxpaint_rows() -> pd.DataFrame:
    manifest = Path(build_dataset("tuxpaint"))
    rows = pd.read_csv(manifest, keep_default_na=False)
    rows = rows[rows["audio"] != ""].reset_index(drop=True)
    rows["audio"] = [str(manifest.parent / a) for a in rows["audio"]]
    return rows


def folds_by_text(texts: pd.Series, folds: int, seed: int = 0) -> np.ndarray:
    """Fold of each row: distinct descriptions shuffled and dealt round-robin."""
    unique = sorted(set(texts))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {unique[i]: k % folds for k, i in enumerate(order)}
    return np.array([fold_of[t] for t in texts])


def tuxpaint(crops: list[str], epochs: int, folds: int, seed: int, work: Path) -> dict:
    rows = tuxpaint_rows()
    fold = folds_by_text(rows["text"], folds)
    gallery = sorted(set(rows["text"]))
    label_of = dict(zip(rows["text"], rows["label"], strict=True))
    relevant = np.array([[label_of[t] == label for t in gallery] for label in rows["label"]])
    own = np.array([[t == text for t in gallery] for text in rows["text"]])
    config = ExperimentConfig.from_yaml(CONFIG)
    config.data.val_split = None
    config.train.batch_size = 32
    config.train.warmup_steps = 10
    config.model.towers["audio"].params["widths"] = [16, 32, 64]
    out = {}
    for crop in crops:
        scores = np.zeros((len(rows), len(gallery)), np.float32)
        started = time.perf_counter()
        for k in range(folds):
            split = np.where(fold == k, "test", "train")
            csv = work / f"tux-{crop}-{k}.csv"
            rows.assign(split=split)[["id", "audio", "text", "label", "split"]].to_csv(
                csv, index=False
            )
            run = work / f"tux-{crop}-{k}"
            fit(with_crop(config, crop, epochs, seed), run, manifest=csv)
            model = load(run)
            held = np.flatnonzero(fold == k)
            audio = model.encode(list(rows["audio"][held]), "audio")
            scores[held] = audio @ model.encode(gallery, "text").T
            print(f"  tuxpaint {crop} fold {k}: {time.perf_counter() - started:.0f} s", flush=True)
        seconds = time.perf_counter() - started
        metrics = {f"label/{k}": v for k, v in retrieval_metrics(scores, relevant, KS).items()}
        own_metrics = retrieval_metrics(scores, own, KS)
        metrics |= {f"own_description/{k}": v for k, v in own_metrics.items()}
        out[crop] = {"train_seconds": round(seconds, 1), **metrics}
        print(
            f"tuxpaint {crop}: R@1 {100 * metrics['label/R@1']:.1f} in {seconds:.0f} s", flush=True
        )
    chance = {f"label/{k}": v for k, v in chance_metrics(relevant, KS).items()}
    chance |= {f"own_description/{k}": v for k, v in chance_metrics(own, KS).items()}
    return {
        "clips": len(rows),
        "gallery_descriptions": len(gallery),
        "categories": int(rows["label"].nunique()),
        "folds": folds,
        "epochs": epochs,
        "direction": "audio_to_text",
        "chance": chance,
        "crops": out,
    }


def energy_shares(paths: list[str], crops: list[str], seconds: float = 1.5) -> dict:
    """Per crop, the share of each longer-than-``seconds`` clip's energy its window keeps."""
    waves = [load_audio(p) for p in paths]
    length = round(16_000 * seconds)
    longer = [w for w in waves if len(w) > length]
    result: dict = {"clips": len(waves), "longer_than_window": len(longer), "seconds": seconds}
    for crop in [c for c in crops if c != "windows"]:
        shares = np.array([energy_fraction(w, crop_start(w, length, crop), length) for w in longer])
        if len(shares):
            result[crop] = {
                "mean": float(shares.mean()),
                "median": float(np.median(shares)),
                "min": float(shares.min()),
                "under_25pct": int((shares < 0.25).sum()),
                "under_11pct": int((shares < 0.11).sum()),
            }
    return result


def print_table(title: str, crops: dict, keys: list[str]) -> None:
    print(f"\n{title}")
    print("| crop | " + " | ".join(keys) + " | train s |")
    print("|---" * (len(keys) + 2) + "|")
    for crop, row in crops.items():
        cells = [f"{100 * row[k]:.1f}" for k in keys]
        print(f"| {crop} | " + " | ".join(cells) + f" | {row['train_seconds']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crops", default=",".join(CROPS))
    parser.add_argument("--datasets", default="spoken-digits,tuxpaint")
    parser.add_argument("--digits-epochs", type=int, default=3)
    parser.add_argument("--tux-epochs", type=int, default=25)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="train.seed (folds stay fixed)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/audio_crops.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    crops = args.crops.split(",")
    datasets = args.datasets.split(",")
    command = " ".join(["python benchmarks/audio_crops.py", *sys.argv[1:]])
    result: dict = {"command": command, "seed": args.seed, "machine": platform.machine()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "tuxpaint" in datasets:
            rows = tuxpaint_rows()
            result["tuxpaint_energy"] = energy_shares(list(rows["audio"]), crops)
            result["tuxpaint"] = tuxpaint(crops, args.tux_epochs, args.folds, args.seed, work)
            keys = ["label/R@1", "label/R@5", "label/mAP", "own_description/R@10"]
            print_table("tuxpaint (audio→text, cross-validated)", result["tuxpaint"]["crops"], keys)
            chance = result["tuxpaint"]["chance"]
            print("chance: " + ", ".join(f"{k} {100 * chance[k]:.1f}" for k in keys))
        if "spoken-digits" in datasets:
            manifest = Path(build_dataset("spoken-digits"))
            paths = [str(manifest.parent / a) for a in pd.read_csv(manifest)["audio"]]
            result["spoken_digits_energy"] = energy_shares(paths, crops)
            result["spoken_digits"] = spoken_digits(crops, args.digits_epochs, args.seed, work)
            keys = ["text_to_audio/R@1", "audio_to_text/R@1", "text_to_audio/mAP", "primary"]
            print_table("spoken-digits (test split)", result["spoken_digits"]["crops"], keys)
    for name in ("tuxpaint_energy", "spoken_digits_energy"):
        if name in result:
            print(f"\n{name}: " + dumps_json(result[name]))
    write_text_atomic(Path(args.out), dumps_json(result))


if __name__ == "__main__":
    main()
