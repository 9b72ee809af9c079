"""Three modalities on builtin:tuxpaint: one space for image, text and audio (tuxpaint.yaml).

Variants, each trained from scratch per seed (the frozen text and image towers' features come
from the feature cache after the first run) and scored on held-out rows:

- ``all pairs``: the config as it is: every pair of modalities over the rows having both;
- ``anchor image``: the objective with ``anchor: image`` — image–text and image–audio pairs only,
  so audio↔text is never paired in training (emergent alignment, as ImageBind);
- ``audio-text``: text and audio towers only, trained on the rows that have a sound (the direct
  baseline for audio↔text);
- ``text 50% blanked`` / ``image 50% blanked``: ``all pairs`` on a training manifest where a
  seeded half of the train rows having that modality lose it (empty cell = absent).

Every direction is scored over the rows having both sides (``evaluate_model``) beside its exact
chance level, on the test split and on val+test (no variant uses val: ``val_split`` is off and
the final model is scored), because the test split has only 12 rows with a sound. For audio→text
a wider gallery is scored too: each clip against every distinct description of the split.
Prints tables; writes benchmarks/results/modalities.json.
Usage: python benchmarks/modalities.py [--seeds 0,1] [--epochs N]
       [--variants all,anchor,audio_text,text_blank,image_blank] [--out PATH] [--work DIR]
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from jointspace.atomic import write_text_atomic
from jointspace.config import ExperimentConfig
from jointspace.data import build_dataset, load_manifest
from jointspace.data.manifest import FILE_COLUMNS, Manifest
from jointspace.evaluate.metrics import chance_metrics, retrieval_metrics
from jointspace.evaluate.retrieval import evaluate_model
from jointspace.models.embedding import distinct_items, embed_items
from jointspace.report.markdown import markdown_table
from jointspace.runs import load
from jointspace.runs.fit import fit

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "tuxpaint.yaml"
VARIANTS = {
    "all": "all pairs",
    "anchor": "anchor image",
    "audio_text": "audio-text",
    "text_blank": "text 50% blanked",
    "image_blank": "image 50% blanked",
}
BLANKED = 0.5
AUDIO_TEXT_BATCH = 32
KS = (1, 5, 10)


def write_manifest(source: Path, out: Path, rows: list[dict[str, str]]) -> Path:
    """``rows`` as a CSV at ``out``, file cells made absolute so they resolve from anywhere."""
    columns = list(rows[0])
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for row in rows:
            fixed = {
                c: str(source.parent / row[c]) if c in FILE_COLUMNS and row[c] else row[c]
                for c in columns
            }
            writer.writerow(fixed)
    return out


def read_rows(source: Path) -> list[dict[str, str]]:
    with source.open(newline="") as f:
        return list(csv.DictReader(f))


def blank(rows: list[dict[str, str]], modality: str, fraction: float, seed: int) -> list[dict]:
    """A seeded ``fraction`` of the train rows having ``modality`` lose it (empty cell)."""
    rows = [dict(row) for row in rows]
    having = [i for i, row in enumerate(rows) if row["split"] == "train" and row[modality]]
    rng = np.random.default_rng(seed)
    for i in rng.choice(having, round(fraction * len(having)), replace=False):
        rows[i][modality] = ""
    return rows


def variant_setup(variant: str, base: ExperimentConfig, source: Path, seed: int, work: Path):
    """The config and the training manifest of one variant and seed."""
    config = copy.deepcopy(base)
    config.train.seed, config.train.progress = seed, False
    config.data.val_split = None  # no model selection: val stays held out with test
    rows = read_rows(source)
    manifest = source
    if variant == "anchor":
        config.objectives[0].params = {**config.objectives[0].params, "anchor": "image"}
    elif variant == "audio_text":
        config.data.modalities = ["text", "audio"]
        del config.model.towers["image"]
        # 104 training rows: batches of 32 (the three-modality batches of 128 hold ~21 clips)
        config.train.batch_size = AUDIO_TEXT_BATCH
        kept = [row for row in rows if row["audio"]]
        manifest = write_manifest(source, work / f"audio_text-{seed}.csv", kept)
    elif variant.endswith("_blank"):
        modality = variant.removesuffix("_blank")
        blanked = blank(rows, modality, BLANKED, seed)
        manifest = write_manifest(source, work / f"{variant}-{seed}.csv", blanked)
    return config, manifest


def wide_audio_to_text(model, part: Manifest) -> dict[str, float]:
    """Each clip of ``part`` against every distinct description of ``part`` (not only those of
    rows with a sound), relevant = paired in some row; with exact chance."""
    texts, _ = distinct_items(part, "text")
    clips, _ = distinct_items(part, "audio")
    t_index, c_index = {t: i for i, t in enumerate(texts)}, {c: i for i, c in enumerate(clips)}
    relevant = np.zeros((len(clips), len(texts)), dtype=bool)
    for row in part.rows:
        if row["audio"] and row["text"]:
            relevant[c_index[row["audio"]], t_index[row["text"]]] = True
    scores = (
        embed_items(model, part, "audio", clips)[1] @ embed_items(model, part, "text", texts)[1].T
    )
    out = retrieval_metrics(scores, relevant, KS)
    chance = chance_metrics(relevant, KS)
    return (
        out
        | {f"chance_{k}": v for k, v in chance.items()}
        | {
            "queries": len(clips),
            "gallery": len(texts),
        }
    )


def score(model, source: Path, modalities: list[str], config: ExperimentConfig) -> dict:
    full = load_manifest(source, modalities)
    test = full.split("test")
    held = Manifest(
        full.path, [r for r in full.rows if r["split"] in ("val", "test")], full.columns
    )
    out = {
        "test": evaluate_model(model, test, config.eval, modalities),
        "val+test": evaluate_model(model, held, config.eval, modalities),
    }
    if "audio" in modalities and "text" in modalities:
        out["wide audio_to_text test"] = wide_audio_to_text(model, test)
        out["wide audio_to_text val+test"] = wide_audio_to_text(model, held)
    return out


def run_one(variant: str, seed: int, base, source: Path, work: Path, epochs: int | None) -> dict:
    """Train one variant and seed into ``work`` (a run already there is scored, not retrained)."""
    config, manifest = variant_setup(variant, base, source, seed, work)
    if epochs is not None:
        config.train.epochs = epochs
    run_dir = work / f"{variant}-{seed}"
    timing = run_dir / "fit_seconds"
    if not timing.is_file():
        started = time.perf_counter()
        fit(config, run_dir, manifest=manifest)
        timing.write_text(f"{time.perf_counter() - started:.1f}")
    model = load(run_dir)
    # always scored on the complete manifest, whatever was blanked for training
    scores = score(model, source, list(config.data.modalities), config)
    seconds = float(timing.read_text())
    return {"variant": VARIANTS[variant], "seed": seed, "fit_seconds": seconds} | scores


def sizes(source: Path) -> dict:
    """Rows, rows with a sound and distinct descriptions per split (what every number rests on)."""
    rows = read_rows(source)
    out = {}
    for split in ("train", "val", "test"):
        part = [r for r in rows if r["split"] == split]
        out[split] = {
            "rows": len(part),
            "with_audio": sum(bool(r["audio"]) for r in part),
            "distinct_texts": len({r["text"] for r in part}),
            "distinct_texts_with_audio": len({r["text"] for r in part if r["audio"]}),
        }
    return out


def direction_rows(result: dict, where: str) -> list[list[str]]:
    metrics = result[where]
    directions = list(dict.fromkeys(k.split("/")[0] for k in metrics if "/" in k))
    rows = []
    for d in directions:
        cells = [
            f"{100 * metrics[f'{d}/R@{k}']:.1f} ({100 * metrics[f'{d}/chance_R@{k}']:.1f})"
            for k in KS
        ]
        rows.append(
            [result["variant"], str(result["seed"]), d, *cells, str(int(metrics[f"{d}/queries"]))]
        )
    return rows


def summary(results: list[dict]) -> dict:
    """Per variant, split and direction: mean and per-seed R@K and chance."""
    out: dict = {}
    for result in results:
        for where in ("test", "val+test"):
            for key, value in result[where].items():
                if "/" in key and isinstance(value, float | int):
                    slot = out.setdefault(result["variant"], {}).setdefault(where, {})
                    slot.setdefault(key, []).append(value)
        for where in ("wide audio_to_text test", "wide audio_to_text val+test"):
            for key, value in result.get(where, {}).items():
                slot = out.setdefault(result["variant"], {}).setdefault(where, {})
                slot.setdefault(key, []).append(value)
    return {
        variant: {
            where: {key: {"mean": statistics.fmean(v), "per_seed": v} for key, v in keys.items()}
            for where, keys in wheres.items()
        }
        for variant, wheres in out.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/modalities.json")
    parser.add_argument("--work", type=Path, default=None, help="Run directories (default: temp).")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    base = ExperimentConfig.from_yaml(CONFIG)
    source = Path(build_dataset("tuxpaint"))
    work = args.work or Path(tempfile.mkdtemp(prefix="modalities-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for variant in variants:
        for seed in seeds:
            result = run_one(variant, seed, base, source, work, args.epochs)
            results.append(result)
            print(f"{result['variant']} seed {seed}: fit {result['fit_seconds']} s", flush=True)
    header = ["variant", "seed", "direction", *(f"R@{k} (chance)" for k in KS), "queries"]
    for where in ("test", "val+test"):
        rows = [row for result in results for row in direction_rows(result, where)]
        print(f"\n{where} split, relevance={base.eval.relevance}, % (exact chance)\n")
        print(markdown_table(header, rows))
    wide = [
        [
            r["variant"],
            str(r["seed"]),
            where.removeprefix("wide audio_to_text "),
            *(
                f"{100 * r[where][f'R@{k}']:.1f} ({100 * r[where][f'chance_R@{k}']:.1f})"
                for k in KS
            ),
            f"{r[where]['queries']}×{r[where]['gallery']}",
        ]
        for r in results
        for where in ("wide audio_to_text test", "wide audio_to_text val+test")
        if where in r
    ]
    if wide:
        print("\naudio → every description of the split, % (exact chance)\n")
        print(markdown_table(["variant", "seed", "split", *header[3:6], "clips×texts"], wide))
    report = {
        "command": "python benchmarks/modalities.py " + " ".join(argv or sys.argv[1:]),
        "config": str(CONFIG.relative_to(ROOT)),
        "epochs": args.epochs or base.train.epochs,
        "seeds": seeds,
        "blanked_fraction": BLANKED,
        "sizes": sizes(source),
        "machine": {
            "platform": platform.platform(),
            "threads": args.threads,
            "torch": torch.__version__,
        },
        "runs": results,
        "summary": summary(results),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
