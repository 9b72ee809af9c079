"""Exact search through the index with fp16 / int8 scan storage vs fp32: time per query (one
query, and a batch) and recall@10 against fp32 exact, over N random unit float32 vectors.

Three indexes (``faiss://DIR?storage=fp32|fp16|int8`` via ``open_index``) hold the same rows;
every storage runs in this one process, interleaved (each repetition runs all of them in turn),
and the fastest repetition counts. Times include the whole ``search`` call (SQLite id lookup of
the hits too). Usage:
python benchmarks/storage_search.py [--n 1000000] [--dim 384] [--batch 200] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from jointspace.index import open_index
from jointspace.report.markdown import markdown_table

K = 10
STORAGES = ("fp32", "fp16", "int8")
ADD = 65536  # rows per add / save while building


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, ADD):
        chunk = rng.standard_normal((min(ADD, n - start), dim), dtype=np.float32)
        out[start : start + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def build(folder: Path, storage: str, base: np.ndarray) -> float:
    """Build one index through the API; its build seconds."""
    start = time.perf_counter()
    index = open_index(f"faiss://{folder}?storage={storage}", dim=base.shape[1], mode="w")
    for first in range(0, len(base), ADD):
        rows = range(first, min(first + ADD, len(base)))
        index.add([str(r) for r in rows], base[rows.start : rows.stop])
        index.save()
    index.close()
    return time.perf_counter() - start


def found(hits) -> np.ndarray:
    return np.array([[int(h.id) for h in row] for row in hits])


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(t)) / K for g, t in zip(got, truth, strict=True)]))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: a temp)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "storage_search.json"
    )
    args = parser.parse_args()
    base = unit_vectors(args.n, args.dim, 0)
    cases = {
        "1 query": unit_vectors(1, args.dim, 1),
        "batch": unit_vectors(args.batch, args.dim, 2),
    }
    work = Path(tempfile.mkdtemp(prefix="storage_search_", dir=args.dir))
    try:
        built = {s: build(work / s, s, base) for s in STORAGES}
        del base  # searches read the memory-mapped files, as a service would
        print(json.dumps({"build_seconds": built}), flush=True)
        indexes = {s: open_index(f"faiss://{work / s}") for s in STORAGES}
        disk = {s: folder_bytes(work / s) for s in STORAGES}
        seconds = {(c, s): float("inf") for c in cases for s in STORAGES}
        got: dict[tuple[str, str], np.ndarray] = {}
        load = [os.getloadavg()[0]]
        for _ in range(args.reps):  # interleaved: every storage once per repetition
            for case, queries in cases.items():
                for storage, index in indexes.items():
                    start = time.perf_counter()
                    hits = index.search(queries, k=K)
                    seconds[case, storage] = min(
                        seconds[case, storage], time.perf_counter() - start
                    )
                    got[case, storage] = found(hits)
            load.append(os.getloadavg()[0])
        for index in indexes.values():
            index.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = []
    for case, queries in cases.items():
        for storage in STORAGES:
            t = seconds[case, storage]
            results.append(
                {
                    "case": case,
                    "storage": storage,
                    "seconds": t,
                    "ms_per_query": t / len(queries) * 1e3,
                    "vs fp32": t / seconds[case, "fp32"],
                    "recall_at_10": recall(got[case, storage], got[case, "fp32"]),
                    "folder_bytes": disk[storage],
                }
            )
            print(json.dumps(results[-1]), flush=True)
    payload = {
        "n": args.n,
        "dim": args.dim,
        "batch": args.batch,
        "k": K,
        "reps": args.reps,
        "build_seconds": built,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor()},
        "load_average_1min": load,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"\n{table(results)}\nload average (1 min) per repetition: {load}")
    print(f"→ {args.out}")


def table(results: list[dict]) -> str:
    header = ["case", "storage", "ms", "ms / query", "× fp32", "recall@10 vs fp32", "folder GB"]
    body = [
        [
            row["case"],
            row["storage"],
            f"{row['seconds'] * 1e3:.1f}",
            f"{row['ms_per_query']:.2f}",
            f"{row['vs fp32']:.2f}×",
            f"{row['recall_at_10']:.4f}",
            f"{row['folder_bytes'] / 1e9:.2f}",
        ]
        for row in results
    ]
    return markdown_table(header, body)


if __name__ == "__main__":
    main()
