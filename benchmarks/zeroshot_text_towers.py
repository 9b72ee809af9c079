"""Zero-shot on held-out classes: a from-scratch text tower against the locked MiniLM one.

Same data, image tower, seeds and epochs; only the text tower differs. Prints a table (mean
± std over seeds) and writes JSON. Usage:
python benchmarks/zeroshot_text_towers.py [--datasets digits,emoji] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from held_out import train_and_score

from jointspace.config import ExperimentConfig, TowerConfig, builtin_config
from jointspace.report.markdown import markdown_table

# scratch: the dataset's config; minilm-*: the locked MiniLM text tower with a linear or MLP
# head, or with an MLP head and its last two layers unlocked.
VARIANTS = ("scratch", "minilm-linear", "minilm-mlp", "minilm-unlock2")


def variant_config(dataset: str, variant: str) -> ExperimentConfig:
    """The dataset's config, or its ``-minilm`` twin with the head/unlocking the variant names."""
    if variant == "scratch":
        return ExperimentConfig.from_yaml(builtin_config(dataset))
    config = ExperimentConfig.from_yaml(builtin_config(f"{dataset}-minilm"))
    text = config.model.towers["text"]
    text.params["head"] = "linear" if variant == "minilm-linear" else "mlp"
    text.unlock_last = 2 if variant == "minilm-unlock2" else 0
    return config


def run(
    dataset: str, variant: str, seed: int, workdir: Path, epochs: int | None, image_tower: str
) -> dict:
    config = variant_config(dataset, variant)
    if image_tower == "efficientnet":  # the pretrained ImageNet tower, locked, for both variants
        params = {"image_size": 128, "head": "mlp"}
        config.model.towers["image"] = TowerConfig("efficientnet_lite0", params, lock=True)
    config.train.progress, config.train.seed = False, seed
    config.train.epochs = epochs or config.train.epochs
    run_dir = workdir / f"{dataset}-{VARIANTS.index(variant)}-{seed}"
    scores = train_and_score(config, dataset, run_dir)
    zero_shot, retrieval, chance = scores.zero_shot, scores.retrieval, scores.chance
    return {
        "dataset": dataset,
        "text tower": variant,
        "image tower": image_tower,
        "seed": seed,
        "epochs": config.train.epochs,
        "classes": len(zero_shot.labels),
        "top1": zero_shot.metrics["top1"],
        "top5": zero_shot.metrics["top5"],
        "per-class": zero_shot.metrics["mean_per_class"],
        "chance top1": zero_shot.metrics["chance_top1"],
        "t→i R@10": retrieval["text_to_image/R@10"],
        "chance t→i R@10": chance["text_to_image/R@10"],
        "train s": scores.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,emoji")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--image-tower", default="config", choices=["config", "efficientnet"])
    parser.add_argument("--epochs", type=int, default=None, help="override each config's epochs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/zeroshot.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for dataset in args.datasets.split(","):
            for variant in args.variants.split(","):
                for seed in map(int, args.seeds.split(",")):
                    rows.append(
                        run(dataset, variant, seed, Path(workdir), args.epochs, args.image_tower)
                    )
                    print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print(f"\n{summary(rows)}\n→ {args.out}")


def summary(rows: list[dict]) -> str:
    """A Markdown table with one line per dataset × text tower: mean ± std over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["text tower"]), []).append(row)
    keys = [k for k in rows[0] if k not in ("dataset", "text tower", "seed", "image tower")]
    body = [
        [dataset, variant, str(len(group)), *(_cell(k, [r[k] for r in group]) for k in keys)]
        for (dataset, variant), group in groups.items()
    ]
    return markdown_table(["dataset", "text tower", "seeds", *keys], body)


def _cell(key: str, values: list) -> str:
    if not isinstance(values[0], float):
        return str(values[0])
    scale = 1 if key == "train s" else 100
    mean, std = scale * np.mean(values), scale * np.std(values)
    return f"{mean:.0f}" if key == "train s" else f"{mean:.1f} ± {std:.1f}"


if __name__ == "__main__":
    main()
