"""Exact search: jointspace.index.scan.top_k vs FAISS IndexFlatIP (plain and with an ID selector)
and NumPy matmul + argpartition, over N random unit float32 vectors, one query and a batch, with
and without a filter (a random ``--filter`` fraction of rows); plus the fp16 / int8 storages.

Every method runs in this one process, interleaved (each repetition runs all methods in turn),
and the fastest repetition counts. The bounds are measured in every repetition too: read
bandwidth (the best of a NumPy and a torch sum over the whole base) and the matmul rate (the
best NumPy / torch sgemm of two 4096² matrices). A single query is memory-bound (bound = N·d·4
bytes / bandwidth), a batch compute-bound (bound = 2·q·N·d / matmul rate). Usage:
python benchmarks/search.py [--n 1000000] [--dim 384] [--batch 200] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jointspace.index.scan import storage, top_k
from jointspace.report.markdown import markdown_table

K = 10


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 65536):
        chunk = rng.standard_normal((min(65536, n - start), dim), dtype=np.float32)
        out[start : start + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def best_time(run: Callable[[], object], reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def bound_probes(base: np.ndarray) -> dict[str, Callable[[], object]]:
    """Read bandwidth over the base itself and the sgemm rate, each by NumPy and by torch."""
    import torch

    tensor = torch.from_numpy(base)
    a = np.random.default_rng(1).standard_normal((4096, 4096), dtype=np.float32)
    ta = torch.from_numpy(a)
    return {
        "read numpy": base.sum,
        "read torch": tensor.sum,
        "sgemm numpy": lambda: a @ a,
        "sgemm torch": lambda: torch.mm(ta, ta),
    }


def bounds(probe_seconds: dict[str, float], nbytes: int) -> dict:
    """The best rates the probes reached over all repetitions."""
    read = min(probe_seconds["read numpy"], probe_seconds["read torch"])
    mm = min(probe_seconds["sgemm numpy"], probe_seconds["sgemm torch"])
    return {"bandwidth_gb_s": nbytes / read / 1e9, "matmul_gflop_s": 2 * 4096**3 / mm / 1e9}


def numpy_top_k(base: np.ndarray, queries: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """The plain way: all scores, then argpartition (the subset gathered first when filtered)."""
    scores = queries @ (base if rows is None else base[rows]).T
    top = np.argpartition(scores, scores.shape[1] - K, axis=1)[:, -K:]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    found = np.take_along_axis(top, order, axis=1)
    return found if rows is None else rows[found]


def faiss_methods(base: np.ndarray, rows: np.ndarray) -> dict[str, Callable]:
    """IndexFlatIP, filtered through a prebuilt IDSelectorBitmap or IDSelectorBatch."""
    import faiss

    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    bitmap = np.packbits(np.isin(np.arange(len(base)), rows), bitorder="little")
    by_bitmap = faiss.IDSelectorBitmap(len(base), faiss.swig_ptr(bitmap))
    by_batch = faiss.IDSelectorBatch(len(rows), faiss.swig_ptr(rows))
    # The selectors point into these arrays: keep them alive with the closures.
    keep = (bitmap, rows, by_bitmap, by_batch)

    def flat(queries: np.ndarray, subset: np.ndarray | None, keep=keep) -> np.ndarray | None:
        params = None if subset is None else faiss.SearchParameters(sel=keep[2])
        return index.search(queries, K, params=params)[1]

    def batch(queries: np.ndarray, subset: np.ndarray | None, keep=keep) -> np.ndarray | None:
        if subset is None:
            return None  # the same search as IndexFlatIP
        return index.search(queries, K, params=faiss.SearchParameters(sel=keep[3]))[1]

    return {"faiss IndexFlatIP (bitmap selector)": flat, "faiss IDSelectorBatch": batch}


def encoded(store, base: np.ndarray) -> np.ndarray:
    """The base encoded a chunk at a time (no full-size float temporaries)."""
    codes = np.empty(base.shape, store.dtype)
    for start in range(0, len(base), 65536):
        codes[start : start + 65536] = store.encode(base[start : start + 65536])
    return codes


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--filter", type=float, default=0.01, help="fraction of rows allowed")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search.json"))
    args = parser.parse_args()
    base = unit_vectors(args.n, args.dim, seed=0)
    rng = np.random.default_rng(2)
    rows = np.sort(rng.choice(args.n, max(K, int(args.n * args.filter)), replace=False))
    queries = unit_vectors(args.batch, args.dim, seed=3)
    probes = bound_probes(base)
    probe_seconds = dict.fromkeys(probes, float("inf"))
    methods: dict[str, Callable] = {
        "scan.top_k": lambda q, r: top_k(base, q, K, rows=r)[1],
        "numpy matmul+argpartition": lambda q, r: numpy_top_k(base, q, r),
        **faiss_methods(base, rows),
    }
    sample = base[rng.choice(args.n, min(args.n, 100_000), replace=False)]
    stores = {name: storage(name).fit(sample) for name in ("fp16", "int8")}
    codes = {name: encoded(store, base) for name, store in stores.items()}
    for name, store in stores.items():
        methods[f"scan {name}"] = lambda q, r, s=store, c=codes[name]: s.search(c, q, K, rows=r)[1]
        methods[f"scan {name} + fp32 re-score"] = lambda q, r, s=store, c=codes[name]: s.search(
            c, q, K, rows=r, exact=base
        )[1]
    cases = {
        "1 query": (queries[:1], None),
        "1 query, filtered": (queries[:1], rows),
        f"{args.batch} queries": (queries, None),
        f"{args.batch} queries, filtered": (queries, rows),
    }
    truth = {case: top_k(base, q, K, rows=r)[1] for case, (q, r) in cases.items()}
    seconds = {(case, m): float("inf") for case in cases for m in methods}
    found = {}
    load = [os.getloadavg()[0]]
    for _ in range(args.reps):  # interleaved: every method once per repetition
        for name, probe in probes.items():  # the bounds, measured between the methods too
            probe_seconds[name] = min(probe_seconds[name], best_time(probe, 1))
        for case, (q, r) in cases.items():
            for name, run in methods.items():
                start = time.perf_counter()
                found[case, name] = run(q, r)
                seconds[case, name] = min(seconds[case, name], time.perf_counter() - start)
        load.append(os.getloadavg()[0])
    machine = bounds(probe_seconds, base.nbytes)
    print(json.dumps(machine), flush=True)
    results = []
    for case, (q, r) in cases.items():
        scanned = args.n if r is None else len(r)
        for name in methods:
            if found[case, name] is None:
                continue
            t = seconds[case, name]
            bound = (
                scanned * args.dim * 4 / (machine["bandwidth_gb_s"] * 1e9)
                if len(q) == 1
                else 2 * len(q) * scanned * args.dim / (machine["matmul_gflop_s"] * 1e9)
            )
            results.append(
                {
                    "case": case,
                    "method": name,
                    "seconds": t,
                    "vs scan.top_k": t / seconds[case, "scan.top_k"],
                    "bound_seconds": bound,
                    "fraction_of_bound": bound / t,
                    "recall_at_10": recall(found[case, name], truth[case]),
                }
            )
            print(json.dumps(results[-1]), flush=True)
    payload = {
        "n": args.n,
        "dim": args.dim,
        "batch": args.batch,
        "filter_rows": len(rows),
        "k": K,
        "reps": args.reps,
        "machine": {**machine, "cpus": os.cpu_count(), "processor": platform.processor()},
        "load_average_1min": load,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"\n{table(results, machine)}\nload average (1 min) per repetition: {load}")
    print(f"→ {args.out}")


def table(results: list[dict], machine: dict) -> str:
    header = ["case", "method", "ms", "× scan.top_k", "of bound", "recall@10"]
    body = [
        [
            row["case"],
            row["method"],
            f"{row['seconds'] * 1e3:.1f}",
            f"{row['vs scan.top_k']:.2f}×",
            f"{row['fraction_of_bound']:.0%}",
            f"{row['recall_at_10']:.3f}",
        ]
        for row in results
    ]
    note = (
        f"bounds: {machine['bandwidth_gb_s']:.1f} GB/s read (1 query), "
        f"{machine['matmul_gflop_s']:.0f} GFLOP/s sgemm (batches)"
    )
    return f"{markdown_table(header, body)}\n{note}"


if __name__ == "__main__":
    main()
