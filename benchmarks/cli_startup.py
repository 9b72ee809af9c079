"""Time `jointspace --help` for two source trees, alternating runs so both see the same load."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def time_help(src: str) -> float:
    env = {**os.environ, "PYTHONPATH": src}
    started = time.perf_counter()
    code = (
        "from jointspace.cli import main; import sys; sys.argv = ['jointspace', '--help']; main()"
    )
    subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", required=True, help="src/ of the old tree")
    parser.add_argument("--after", default="src", help="src/ of the new tree")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", default="benchmarks/results/cli_startup.json")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"before": [], "after": []}
    load = os.getloadavg()[0]
    for _ in range(args.repeats):
        for name in ("before", "after"):
            times[name].append(time_help(getattr(args, name)))
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "median_s": medians,
        "ratio": medians["before"] / medians["after"],
        "load_average_1min": [load, os.getloadavg()[0]],
        "cores": os.cpu_count(),
        "runs": times,
    }
    print("| tree | median s | runs |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {medians[name]:.2f} | {len(values)} |")
    print(f"ratio {result['ratio']:.1f}x; 1-min load average {load:.1f} → {os.getloadavg()[0]:.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
