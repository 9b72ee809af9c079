"""Re-ranking with the cross-modal matcher: retrieval before/after and its cost per query.

Trains a config (or reuses ``--run``), trains its matcher with ``train_matcher`` (train split,
epoch chosen on val), reports val and test Recall@K / mAP for the bi-encoder alone and with the
top ``candidates`` re-ranked, then times ``POST /search`` on a FAISS index of every image with and
without re-ranking, side by side in one process. Prints tables and writes JSON. Usage:
python benchmarks/rerank.py [--config emoji-pairs] [--run DIR] [--epochs N] [--queries 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from jointspace.config import ExperimentConfig, builtin_config
from jointspace.data import build_dataset, read_manifest
from jointspace.report.markdown import markdown_table
from jointspace.runs import Run, train_matcher
from jointspace.runs.fit import fit
from jointspace.serve import create_app

METRICS = ("R@1", "R@5", "R@10", "mAP")


def trained_run(config_name: str, run: Path | None, workdir: Path) -> tuple[Path, Path]:
    config = ExperimentConfig.from_yaml(builtin_config(config_name))
    config.train.progress = config.rerank.progress = False
    manifest = build_dataset(config.data.manifest.removeprefix("builtin:"))
    if run is None:
        run = workdir / "run"
        fit(config, run, manifest=manifest)
    return run, manifest


def latency(run: Path, manifest: Path, workdir: Path, queries: int, rerank: int) -> list[dict]:
    rows = read_manifest(manifest)
    uri = f"faiss://{workdir / 'index'}"
    Run.open(run).build_index(rows, "image", uri, progress=False).close()
    texts = rows.split("test").column("text")[:queries]
    timings = {0: [], rerank: []}
    with TestClient(create_app(run, uri)) as client:
        for text in texts:
            for depth, found in timings.items():  # interleaved: both see the same machine state
                started = time.perf_counter()
                response = client.post(
                    "/search", data={"text": text, "k": "10", "rerank": str(depth)}
                )
                found.append(1000 * (time.perf_counter() - started))
                response.raise_for_status()
    base = statistics.median(timings[0])
    return [
        {
            "rerank": depth,
            "p50 ms": statistics.median(t),
            "p95 ms": sorted(t)[int(0.95 * (len(t) - 1))],
            "p50 vs no re-ranking": statistics.median(t) / base,
        }
        for depth, t in timings.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="emoji-pairs")
    parser.add_argument("--run", type=Path, default=None, help="An already trained run.")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=None, help="Override rerank.epochs.")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON (default: results/rerank_CONFIG.json)."
    )
    args = parser.parse_args()
    args.out = args.out or Path(f"benchmarks/results/rerank_{args.config}.json")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        run, manifest = trained_run(args.config, args.run, workdir)
        config = ExperimentConfig.from_yaml(builtin_config(args.config)).rerank
        config.progress = False
        config.epochs = args.epochs or config.epochs
        started = time.perf_counter()
        metrics = train_matcher(Run.open(run), config, data=manifest)
        train_seconds = time.perf_counter() - started
        timing = latency(run, manifest, workdir, args.queries, config.candidates)
    payload = {
        "config": args.config,
        "candidates": config.candidates,
        "epochs": config.epochs,
        "rerank training seconds": train_seconds,
        "metrics": metrics,
        "latency": timing,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"{quality_table(metrics)}\n\n{latency_table(timing)}\n")
    print(f"matcher training: {train_seconds:.0f} s → {args.out}")


def quality_table(metrics: dict) -> str:
    body = []
    for split, stages in metrics.items():
        directions = sorted({k.split("/")[0] for k in stages["bi_encoder"] if "/" in k})
        for direction in directions:
            for stage, values in stages.items():
                cells = [f"{100 * values[f'{direction}/{m}']:.1f}" for m in METRICS]
                body.append([split, direction.replace("_to_", " → "), stage, *cells])
    return markdown_table(["split", "direction", "stage", *METRICS], body)


def latency_table(rows: list[dict]) -> str:
    header = ["re-ranked candidates", "p50 ms", "p95 ms", "p50 vs no re-ranking"]
    body = [
        [str(r["rerank"]), f"{r['p50 ms']:.1f}", f"{r['p95 ms']:.1f}", f"{r[header[3]]:.2f}×"]
        for r in rows
    ]
    return markdown_table(header, body)


if __name__ == "__main__":
    main()
