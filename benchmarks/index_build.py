"""Building a FAISS index folder (format 2) vs FAISS ``add`` + one ``write_index``: time and bytes.

    python benchmarks/index_build.py --n 1000000 --dim 384 --reps 1 [--save-every 4]

Each side runs in its own subprocess (so /proc/self/io counts only its writes), the sides
alternating for ``--reps`` rounds. jointspace adds batches of 256 and saves every ~2 s or 64 MB
of vectors (``index.saving.SaveSchedule``), as ``jointspace index build`` does, or every
``--save-every`` batches; FAISS adds the same batches to an ``IndexFlatIP`` and writes it
once. Bytes are what the process passed to write(2) (``wchar``): vectors, SQLite pages and its
journal. CPU time (user + system) is printed beside wall time: steadier on a shared machine,
though it misses time spent waiting for the disk. Also the bytes of two builds of n/4 and n
(the ratio is ~4 when a save costs what it adds, ~16 when each save rewrites the index).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
BATCH = 256

CHILD = """
import json, sys, time
from pathlib import Path
import numpy as np
side, n, dim, folder = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
save_every = int(sys.argv[5]) or None
rng = np.random.default_rng(0)
batches = [rng.standard_normal((min(256, n - s), dim), dtype=np.float32) for s in range(0, n, 256)]
def wchar():
    text = Path("/proc/self/io").read_text()
    return int(dict(line.split(": ") for line in text.splitlines())["wchar"])
if side == "jointspace":
    from jointspace.index import open_index
    from jointspace.index.saving import SaveSchedule
else:
    import faiss
if side == "jointspace":  # the caller's inputs, made before the clock starts (like batches)
    names = [[f"item-{i}" for i in range(s, s + len(x))] for s, x in zip(range(0, n, 256), batches)]
    metas = [[{"label": str(i % 100), "split": "train"} for i in range(len(x))] for x in batches]
before, start, cpu = wchar(), time.perf_counter(), time.process_time()
if side == "jointspace":
    index = open_index(f"faiss://{folder / 'j'}", dim=dim, mode="w")
    schedule, saves = SaveSchedule(batches=save_every), 0
    for x, ids, meta in zip(batches, names, metas):
        index.add(ids, x, meta)
        if schedule.added(x.nbytes):
            index.save()
            schedule.saved()
            saves += 1
    index.close()
else:
    saves = 0
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    row = 0
    for x in batches:
        index.add_with_ids(x, np.arange(row, row + len(x)))
        row += len(x)
    with open(folder / "f.faiss", "wb") as file:
        faiss.write_index(index, faiss.PyCallbackIOWriter(file.write))
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "bytes": wchar() - before, "saves": saves + 1}))
"""


def run(side: str, n: int, dim: int, save_every: int) -> dict:
    with tempfile.TemporaryDirectory(dir=".") as folder:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, side, str(n), str(dim), folder, str(save_every)],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument(
        "--save-every", type=int, default=0, help="batches per save (0: every ~2 s or 64 MB)"
    )
    args = parser.parse_args()
    rows: dict[str, list[dict]] = {"jointspace": [], "faiss": []}
    for _ in range(args.reps):
        for side in rows:
            rows[side].append(run(side, args.n, args.dim, args.save_every))
    best = {side: min(r["seconds"] for r in runs) for side, runs in rows.items()}
    cpu = {side: min(r["cpu"] for r in runs) for side, runs in rows.items()}
    written = {side: runs[0]["bytes"] for side, runs in rows.items()}
    quarter = run("jointspace", args.n // 4, args.dim, args.save_every)["bytes"]
    policy = f"every {args.save_every} batches" if args.save_every else "by time/bytes"
    every = f"batches of {BATCH}, saves {policy}: {rows['jointspace'][0]['saves']} of them"
    print(f"n={args.n} dim={args.dim} (best of {args.reps}; {every})")
    print(f"{'side':<12}{'seconds':>10}{'CPU s':>10}{'GB written':>12}")
    for side in rows:
        print(f"{side:<12}{best[side]:>10.2f}{cpu[side]:>10.2f}{written[side] / 1e9:>12.3f}")
    time_ratio = best["jointspace"] / best["faiss"]
    cpu_ratio = cpu["jointspace"] / cpu["faiss"]
    bytes_ratio = written["jointspace"] / quarter
    print(f"time jointspace / faiss: {time_ratio:.2f}x (CPU time: {cpu_ratio:.2f}x)")
    print(f"bytes written, n vs n/4: {written['jointspace']} / {quarter} = {bytes_ratio:.2f}")
    result = {
        "n": args.n,
        "dim": args.dim,
        "save_every": args.save_every,
        "runs": rows,
        "best_seconds": best,
        "bytes": written,
        "bytes_quarter_n": quarter,
        "best_cpu_seconds": cpu,
        "time_ratio": time_ratio,
        "cpu_ratio": cpu_ratio,
        "bytes_ratio_n_vs_quarter": bytes_ratio,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = f"_save{args.save_every}" if args.save_every else ""
    (RESULTS / f"index_build{suffix}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
