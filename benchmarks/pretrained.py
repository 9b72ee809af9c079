"""Scratch vs pretrained towers on held-out classes: zero-shot accuracy and text→image recall.

Variants, each with the same epochs, batch size and seed: (a) ``scratch`` — both towers from
scratch (``DATASET.yaml``); (b) ``minilm`` — locked MiniLM text tower, scratch image tower
(``DATASET-minilm.yaml``); (c) ``pretrained`` — locked EfficientNet-Lite0 and locked MiniLM,
only heads train (``DATASET-pretrained.yaml``); (d) ``unlocked`` — (c) with the image tower's
last blocks trained too. Prints a Markdown table and writes JSON. Usage:
python benchmarks/pretrained.py [--datasets emoji,digits] [--variants ...] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from held_out import train_and_score

from jointspace.config import ExperimentConfig, builtin_config
from jointspace.report.markdown import markdown_table

VARIANTS = {
    "scratch": "",
    "minilm": "-minilm",
    "pretrained": "-pretrained",
    "unlocked": "-pretrained",
}


def variant_config(dataset: str, variant: str, args: argparse.Namespace) -> ExperimentConfig:
    config = ExperimentConfig.from_yaml(builtin_config(dataset + VARIANTS[variant]))
    if variant == "unlocked":
        image = config.model.towers["image"]
        image.lock, image.unlock_last = False, args.unlock_last
    if args.image_size and config.model.towers["image"].name == "efficientnet_lite0":
        config.model.towers["image"].params["image_size"] = args.image_size
    train = config.train
    train.epochs, train.batch_size, train.seed, train.progress = (
        args.epochs,
        args.batch_size,
        0,
        False,
    )
    train.feature_cache = args.cache
    return config


def run(dataset: str, variant: str, args: argparse.Namespace, workdir: Path) -> dict:
    config = variant_config(dataset, variant, args)
    scores = train_and_score(config, dataset, workdir / f"{dataset}-{variant}")
    zero_shot, retrieval, chance = scores.zero_shot.metrics, scores.retrieval, scores.chance
    image = config.model.towers["image"]
    return {
        "dataset": dataset,
        "variant": variant,
        "image tower": f"{image.name} {image.params.get('image_size')} px",
        "epochs": config.train.epochs,
        "zero-shot top1": 100 * zero_shot["top1"],
        "zero-shot top5": 100 * zero_shot["top5"],
        "per-class": 100 * zero_shot["mean_per_class"],
        "chance top1": 100 * zero_shot["chance_top1"],
        "t→i R@1": 100 * retrieval["text_to_image/R@1"],
        "t→i R@10": 100 * retrieval["text_to_image/R@10"],
        "chance t→i R@10": 100 * chance["text_to_image/R@10"],
        "train s": scores.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="emoji,digits")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=None, help="EfficientNet input size")
    parser.add_argument("--unlock-last", type=int, default=1, help="image blocks (d) trains")
    parser.add_argument("--cache", default=None, help="feature cache dir (default: a fresh one)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pretrained.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        # A fresh cache by default: each (c) time includes computing its features once.
        args.cache = args.cache or str(Path(workdir) / "cache")
        for dataset in args.datasets.split(","):
            for variant in args.variants.split(","):
                rows.append(run(dataset, variant, args, Path(workdir)))
                print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print(f"\n{table(rows)}\n→ {args.out}")


def table(rows: list[dict]) -> str:
    keys = [k for k in rows[0] if k not in ("dataset", "variant")]
    body = [
        [row["dataset"], row["variant"]]
        + [f"{row[k]:.1f}" if isinstance(row[k], float) else str(row[k]) for k in keys]
        for row in rows
    ]
    return markdown_table(["dataset", "variant", *keys], body)


if __name__ == "__main__":
    main()
