"""Fusion heads side by side: question-only, image-only and every fusion head, per question type.

For each dataset the frozen towers of its config (all-MiniLM-L6-v2 for text, EfficientNet-Lite0
at 128 px for images) encode every unique input ONCE (``labelled_sets``); every model below then
trains only a head on those token states (``fit_classifier``, best epoch on val) and is scored
on the test split (``classification_metrics``):

- ``question-only`` / ``image-only`` (``name-only`` on emoji-subgroups): a single-stream
  attention head that sees one modality (trained and tested without the other);
- ``concat``, ``gated``, ``attention (single)``, ``attention (two-stream)``, ``graph``: fusion
  heads over both.

Datasets: ``digits-vqa`` and ``emoji-pairs-vqa`` (accuracy per question type, overall and on the
rows whose answer needs both modalities; chance = the train-majority answer of each type, and
1/#answers that type has in train), ``emoji-subgroups`` (configs/emoji-subgroups.yaml: accuracy
and macro-F1). Seeds: mean ± std. The margin is the best fusion head's mean accuracy on
needs=both rows minus the best single-modality model's (and the smallest per-seed margin).
Prints tables, writes benchmarks/results/fusion.json.
Usage: python benchmarks/fusion.py [--datasets digits-vqa,emoji-pairs-vqa,emoji-subgroups]
       [--seeds 0,1,2] [--epochs N] [--threads 1] [--quick] [--out PATH] [--show]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from jointspace.atomic import write_text_atomic
from jointspace.classifier.config import ClassifyConfig
from jointspace.classifier.data import LabelledSet, labelled_sets
from jointspace.classifier.fit import fit_classifier, predict_labels
from jointspace.config import PartConfig
from jointspace.data import read_manifest, resolve_manifest
from jointspace.evaluate.classification import classification_metrics
from jointspace.models.build import build_model
from jointspace.report.markdown import markdown_table

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "digits-vqa": ROOT / "configs" / "digits-vqa.yaml",
    "emoji-pairs-vqa": ROOT / "configs" / "emoji-pairs-vqa.yaml",
    "emoji-subgroups": ROOT / "configs" / "emoji-subgroups.yaml",
}
WIDTH = 128
# name → (modalities the head sees, head); the single-modality models use the attention head.
SINGLE = {"question-only": "text", "image-only": "image"}
FUSION = {
    "concat": PartConfig("concat", {"width": WIDTH}),
    "gated": PartConfig("gated", {"width": WIDTH}),
    "attention (single)": PartConfig("attention", {"width": WIDTH, "stream": "single"}),
    "attention (two-stream)": PartConfig("attention", {"width": WIDTH, "stream": "two"}),
    "graph": PartConfig("graph", {"width": WIDTH}),
}
SINGLE_HEAD = PartConfig("attention", {"width": WIDTH, "stream": "single"})


def only(data: LabelledSet, modality: str) -> LabelledSet:
    """The same rows with one modality's states: a head built on it never sees the other."""
    return dataclasses.replace(
        data, tokens={modality: data.tokens[modality]}, index={modality: data.index[modality]}
    )


def needs_of(config: ClassifyConfig, ids: list[str]) -> list[str] | None:
    """Each row's meta_needs (what a correct answer needs), when the manifest records it."""
    manifest = read_manifest(resolve_manifest(config.data.manifest))
    if "meta_needs" not in manifest.columns:
        return None
    by_id = {row["id"]: row["meta_needs"] for row in manifest.rows}
    return [by_id[i] for i in ids]


def scores(truth, predicted, classes, groups, needs) -> dict[str, float]:
    """Accuracy overall, per group, on needs=both rows; macro-F1."""
    metrics = classification_metrics(truth, predicted, classes, groups)
    out = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
    for group, values in (metrics.get("per_group") or {}).items():
        out[f"type:{group}"] = values["accuracy"]
    if needs is not None:
        both = [i for i, n in enumerate(needs) if n == "both"]
        out["needs_both"] = sum(truth[i] == predicted[i] for i in both) / len(both)
    return out


def chance(train: LabelledSet, test: LabelledSet, needs) -> dict[str, dict[str, float]]:
    """Majority answer of each type in train, applied to test; and 1/#answers per type."""
    train_groups = train.groups or ["all"] * len(train)
    test_groups = test.groups or ["all"] * len(test)
    answers: dict[str, Counter] = {}
    for group, label in zip(train_groups, train.labels.tolist(), strict=True):
        answers.setdefault(group, Counter())[label] += 1
    majority = [answers[g].most_common(1)[0][0] for g in test_groups]
    truth = test.labels.tolist()
    major = scores(truth, majority, test.classes, test.groups, needs)
    uniform_of = [1 / len(answers[g]) for g in test_groups]
    uniform = {"accuracy": statistics.fmean(uniform_of)}
    for group in sorted(set(test_groups)):
        uniform[f"type:{group}"] = 1 / len(answers[group])
    if needs is not None:
        uniform["needs_both"] = statistics.fmean(
            u for u, n in zip(uniform_of, needs, strict=True) if n == "both"
        )
    return {"majority": major, "uniform": uniform}


def train_one(config, head, sets, seed, epochs, modality=None) -> tuple[dict, float]:
    """Train ``head`` on the train split (best epoch on val), score the test split."""
    config = copy.deepcopy(config)
    config.head, config.train.seed, config.train.progress = copy.deepcopy(head), seed, False
    config.train.epochs = epochs or config.train.epochs
    train, val, test = (sets[k] for k in ("train", "val", "test"))
    if modality is not None:
        train, val, test = only(train, modality), only(val, modality), only(test, modality)
    started = time.perf_counter()
    fit = fit_classifier(train, config, val=val)
    predicted = predict_labels(fit.model, test).tolist()
    seconds = time.perf_counter() - started
    return {"predicted": predicted, "best_epoch": fit.best_epoch}, seconds


def run_dataset(name: str, seeds: list[int], epochs: int | None) -> dict:
    config = ClassifyConfig.from_yaml(CONFIGS[name])
    started = time.perf_counter()
    torch.manual_seed(0)
    model = build_model(config.towers.model).eval()
    sets = labelled_sets(config, model)
    encode_s = time.perf_counter() - started
    test = sets["test"]
    needs = needs_of(config, test.ids)
    truth = test.labels.tolist()
    print(f"{name}: encoded in {encode_s:.0f} s; rows { ({k: len(v) for k, v in sets.items()}) }")
    models = {m: (SINGLE_HEAD, modality) for m, modality in SINGLE.items()}
    if name == "emoji-subgroups":
        models = {"name-only": (SINGLE_HEAD, "text"), "image-only": (SINGLE_HEAD, "image")}
    models |= {m: (head, None) for m, head in FUSION.items()}
    results: dict = {}
    for label, (head, modality) in models.items():
        runs = []
        for seed in seeds:
            out, seconds = train_one(config, head, sets, seed, epochs, modality)
            got = scores(truth, out["predicted"], test.classes, test.groups, needs)
            runs.append({"seed": seed, "seconds": seconds, "best_epoch": out["best_epoch"]} | got)
            print(f"  {label} seed {seed}: accuracy {got['accuracy']:.3f} ({seconds:.0f} s)")
        keys = [k for k in runs[0] if k not in ("seed", "seconds", "best_epoch")]
        results[label] = {
            "head": dataclasses.asdict(head),
            "modalities": [modality] if modality else sorted(test.tokens),
            "runs": runs,
            "mean": {k: statistics.fmean(r[k] for r in runs) for k in keys},
            "std": {k: statistics.pstdev(r[k] for r in runs) for k in keys},
        }
    out = {
        "config": str(CONFIGS[name].relative_to(ROOT)),
        "rows": {k: len(v) for k, v in sets.items()},
        "classes": len(test.classes),
        "encode_seconds": encode_s,
        "models": results,
        "chance": chance(sets["train"], test, needs),
    }
    key = "needs_both" if needs is not None else "accuracy"
    singles = [m for m in results if m.endswith("-only")]
    fusions = [m for m in results if m not in singles]
    best_single = max(singles, key=lambda m: results[m]["mean"][key])
    best_fusion = max(fusions, key=lambda m: results[m]["mean"][key])
    per_seed = [
        f[key] - s[key]
        for f, s in zip(results[best_fusion]["runs"], results[best_single]["runs"], strict=True)
    ]
    out["margin"] = {
        "on": key,
        "best_fusion": best_fusion,
        "best_single": best_single,
        "mean": results[best_fusion]["mean"][key] - results[best_single]["mean"][key],
        "per_seed": per_seed,
        "min_per_seed": min(per_seed),
    }
    return out


def cell(mean: float, std: float | None = None) -> str:
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def table(out: dict) -> str:
    """Rows: models and chance; columns: per type, overall, needs=both (or macro-F1)."""
    models = out["models"]
    first = next(iter(models.values()))["mean"]
    types = sorted(k for k in first if k.startswith("type:"))
    columns = types + ["accuracy"] + (["needs_both"] if "needs_both" in first else ["macro_f1"])
    header = ["model"] + [c.removeprefix("type:") for c in columns]
    rows = [[m] + [cell(v["mean"][c], v["std"][c]) for c in columns] for m, v in models.items()]
    for kind, values in out["chance"].items():
        rows.append(
            [f"chance ({kind})"] + [cell(values[c]) if c in values else "" for c in columns]
        )
    margin = out["margin"]
    note = (
        f"\nmargin on {margin['on']}: {margin['best_fusion']} − {margin['best_single']} = "
        f"{100 * margin['mean']:+.1f} points (per seed: "
        f"{', '.join(f'{100 * m:+.1f}' for m in margin['per_seed'])})"
    )
    return markdown_table(header, rows) + note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(CONFIGS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="default: each config's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1 epoch, seed 0: a smoke check")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fusion.json"))
    parser.add_argument("--show", action="store_true", help="only print the tables in --out")
    args = parser.parse_args()
    if args.show:
        for name, out in json.loads(Path(args.out).read_text())["datasets"].items():
            print(f"\n{name} (test split, %, seeds {out['seeds']}, {out['epochs']} epochs)")
            print(table(out))
        return
    torch.set_num_threads(args.threads)
    names = [n for n in args.datasets.split(",") if n]
    if unknown := [n for n in names if n not in CONFIGS]:
        parser.error(f"unknown dataset {unknown[0]!r}; known: {', '.join(CONFIGS)}")
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    epochs = 1 if args.quick else args.epochs
    results = {}
    for name in names:
        results[name] = run_dataset(name, seeds, epochs)
        print(f"\n{name} (test split, accuracy in %, mean ± std over seeds {seeds})")
        print(table(results[name]) + "\n")
    path = Path(args.out)
    # Datasets run in separate processes share the file: each run replaces only its own.
    record = json.loads(path.read_text()) if path.is_file() else {"datasets": {}}
    for name, out in results.items():
        record["datasets"][name] = out | {
            "seeds": seeds,
            "epochs": epochs or ClassifyConfig.from_yaml(CONFIGS[name]).train.epochs,
            "quick": args.quick,
            "threads": args.threads,
            "command": "python benchmarks/fusion.py " + " ".join(sys.argv[1:]),
        }
    record["machine"] = {"python": platform.python_version(), "torch": torch.__version__}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
