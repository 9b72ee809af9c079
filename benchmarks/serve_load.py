"""Bounded load test of `jointspace serve` on loopback: text queries, fixed count and duration.

The server runs in its own process (`jointspace serve`); this process sends POST /search from
a thread pool and reports QPS and p50/p95/p99 latency per concurrency level. Without --model,
a small digits model and its FAISS index are trained and built first. Usage:
python benchmarks/serve_load.py [--requests 400] [--duration 30] [--concurrency 1,4]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from jointspace.report.markdown import markdown_table

QUERIES = ("a handwritten seven", "the digit 3", "the number zero", "a scanned 5", "digit four")


def prepare(workdir: Path) -> tuple[Path, str]:
    """A briefly trained digits model and its image index."""
    from jointspace.config import ExperimentConfig, builtin_config
    from jointspace.data import build_dataset, read_manifest
    from jointspace.index.build import build_index
    from jointspace.models import load
    from jointspace.models.io import model_fingerprint
    from jointspace.runs.fit import fit

    manifest = build_dataset("digits")
    config = ExperimentConfig.from_yaml(builtin_config("digits"))
    config.train.max_steps, config.train.progress, config.data.val_split = 60, False, None
    fit(config, workdir / "run", manifest=manifest)
    uri = f"faiss://{workdir / 'index'}"
    model = load(workdir / "run")
    build_index(
        model,
        model_fingerprint(workdir / "run"),
        read_manifest(manifest),
        "image",
        uri,
        progress=False,
    )
    return workdir / "run", uri


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, uri: str, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "jointspace.cli", "serve", str(model), "--index", uri]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    server = subprocess.Popen([*command, "--port", str(port)], **quiet)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not come up")


def load(url: str, requests: int, duration: float, concurrency: int) -> dict:
    """Send up to ``requests`` queries within ``duration`` seconds; latency stats in ms."""
    deadline = time.perf_counter() + duration
    latencies, errors = [], 0

    def one(i: int) -> None:
        nonlocal errors
        if time.perf_counter() > deadline:
            return
        started = time.perf_counter()
        data = {"text": QUERIES[i % len(QUERIES)], "k": "10"}
        response = client.post(f"{url}/search", data=data)
        latencies.append(1000 * (time.perf_counter() - started))
        errors += response.status_code != 200

    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        list(pool.map(one, range(requests)))
        elapsed = time.perf_counter() - started
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "qps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "p99_ms": round(float(p99), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model dir (default: train a small one)")
    parser.add_argument("--index", help="index URI built with that model")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_load.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        model, uri = (args.model, args.index) if args.model else prepare(Path(workdir))
        port = free_port()
        server = start_server(model, uri, port)
        try:
            url = f"http://127.0.0.1:{port}"
            load(url, 20, 10, 1)  # warm-up: first requests load tokenizer caches
            rows = [
                load(url, args.requests, args.duration, int(c)) for c in args.concurrency.split(",")
            ]
        finally:
            server.terminate()
            server.wait(10)
    print(markdown_table(list(rows[0]), [[str(v) for v in row.values()] for row in rows]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
