"""Epoch time of the locked-towers emoji config with and without the frozen-feature cache.

Three runs of one epoch each, same config and seed, in one process: ``off`` (both frozen towers
run every step), ``cold`` (an empty cache: features are computed once, then the epoch trains
the heads) and ``warm`` (a later run: every feature is read from disk). Prints a table with the
ratios to ``off`` and writes JSON. Usage:
python benchmarks/feature_cache.py [--config emoji-pretrained] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from jointspace.config import ExperimentConfig, builtin_config
from jointspace.data import build_dataset
from jointspace.report.markdown import markdown_table
from jointspace.runs.fit import fit


def timed_run(config: ExperimentConfig, cache: str | None, run_dir: Path) -> dict:
    config.train.feature_cache = cache
    manifest = build_dataset(config.data.manifest.removeprefix("builtin:"))
    started = time.perf_counter()
    result = fit(config, run_dir, manifest=manifest)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "final loss": result.history[-1]["loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="emoji-pretrained")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/feature_cache.json"))
    args = parser.parse_args()
    config = ExperimentConfig.from_yaml(builtin_config(args.config))
    config.train.epochs, config.train.progress = args.epochs, False
    config.data.val_split = None  # time training alone
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        cache = str(Path(workdir) / "cache")
        for name, setting in (("off", None), ("cold", cache), ("warm", cache)):
            row = {"cache": name, **timed_run(config, setting, Path(workdir) / name)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    off = rows[0]["seconds"]
    for row in rows:
        row["speed-up vs off"] = off / row["seconds"]
    payload = {"config": args.config, "epochs": args.epochs, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"\n{table(rows, args.epochs)}\n→ {args.out}")


def table(rows: list[dict], epochs: int) -> str:
    header = ["feature cache", f"{epochs}-epoch time (s)", "speed-up vs off", "final loss"]
    body = [
        [
            r["cache"],
            f"{r['seconds']:.1f}",
            f"{r['speed-up vs off']:.1f}×",
            f"{r['final loss']:.4f}",
        ]
        for r in rows
    ]
    return markdown_table(header, body)


if __name__ == "__main__":
    main()
