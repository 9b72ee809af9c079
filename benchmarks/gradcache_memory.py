"""Peak memory of one training step at a large batch: plain, grad cache, activation checkpointing.

Each setting runs in a fresh subprocess (so one's peak cannot hide another's): it builds the
config's model (the digits demo towers by default), a synthetic batch of captions and 32-pixel
images, then times one step (forward, backward, AdamW) and reports the process's peak resident
memory above what it held before the step. Prints a table and writes JSON. Usage:
python benchmarks/gradcache_memory.py [--batch 1024,4096] [--chunk 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from jointspace.report.markdown import markdown_table

SETTINGS = ("plain", "grad cache", "checkpointing", "grad cache + checkpointing")
WORDS = ["a", "handwritten", "digit", "small", "bold", "zero", "one", "two", "three", "four"]


def child(args: argparse.Namespace) -> dict:
    import torch

    from jointspace.config import ExperimentConfig, builtin_config
    from jointspace.data.collate import Batch
    from jointspace.models.build import build_model
    from jointspace.objectives.combined import build_objective
    from jointspace.train.optim import build_optimizer
    from jointspace.train.precision import optimizer_step
    from jointspace.train.step import forward_backward

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = ExperimentConfig.from_yaml(builtin_config(args.config))
    n = args.batch
    captions = [
        " ".join(WORDS[(i * k + i // 7) % len(WORDS)] for k in range(1, 8)) for i in range(n)
    ]
    model = build_model(config.model, corpus=captions[:2000]).train()
    objective = build_objective(config.objectives)
    text, image = model.tower("text"), model.tower("image")
    size = image.params["image_size"]
    inputs = {
        "text": text.collate([text.preprocess(c) for c in captions]),
        "image": torch.rand(n, 3, size, size),
    }
    groups = {m: torch.arange(n) for m in inputs}
    batch = Batch(inputs, groups, torch.arange(n))
    optimizer = build_optimizer([model, objective], config.train)
    if "checkpointing" in args.setting:
        for tower in model.towers.values():
            tower.checkpoint_layers()
    chunk = args.chunk if "grad cache" in args.setting else None
    before = _rss_mib()
    started = time.perf_counter()
    losses = forward_backward(model, objective, batch, grad_cache_chunk=chunk)
    optimizer_step(optimizer, config.train.grad_clip)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "batch": n,
        "setting": args.setting,
        "chunk": chunk,
        "rss before step (MiB)": round(before, 1),
        "peak RSS (MiB)": round(peak, 1),
        "step memory (MiB)": round(peak - before, 1),
        "step time (s)": round(seconds, 2),
        "loss": round(float(losses["loss"]), 6),
    }


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="digits")
    parser.add_argument("--batch", default="1024,4096", help="comma-separated batch sizes")
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/gradcache_memory.json")
    )
    parser.add_argument("--setting", help=argparse.SUPPRESS)  # set in the subprocess
    args = parser.parse_args()
    if args.setting:
        args.batch = int(args.batch)
        print(json.dumps(child(args)))
        return
    rows = []
    for n in (int(b) for b in args.batch.split(",")):
        for setting in args.settings.split(","):
            command = [sys.executable, __file__, "--setting", setting, "--batch", str(n)]
            command += ["--chunk", str(args.chunk), "--threads", str(args.threads)]
            command += ["--config", args.config]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        plain = next(r for r in rows if r["batch"] == row["batch"] and r["setting"] == "plain")
        row["memory vs plain"] = round(row["step memory (MiB)"] / plain["step memory (MiB)"], 3)
        row["time vs plain"] = round(row["step time (s)"] / plain["step time (s)"], 2)
    payload = {"config": args.config, "chunk": args.chunk, "threads": args.threads, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\n{table(rows)}\n→ {args.out}")


def table(rows: list[dict]) -> str:
    header = ["batch", "setting", "step memory (MiB)", "vs plain", "step time (s)", "vs plain"]
    body = [
        [
            str(r["batch"]),
            r["setting"] + (f" (chunk {r['chunk']})" if r["chunk"] else ""),
            f"{r['step memory (MiB)']:.0f}",
            f"{r['memory vs plain']:.2f}×",
            f"{r['step time (s)']:.2f}",
            f"{r['time vs plain']:.2f}×",
            f"{r['loss']:.6f}",
        ]
        for r in rows
    ]
    return markdown_table([*header, "loss"], body)


if __name__ == "__main__":
    main()
