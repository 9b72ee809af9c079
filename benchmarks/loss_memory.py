"""Peak memory and time of one loss forward + backward: naive (the full B×B logits) vs tiled, and
a training step with towers: tiled + gradient cache.

    python benchmarks/loss_memory.py --sizes 4096,8192,16384,32768,65536,131072

Every (loss, method, B) runs in a fresh subprocess, so one run's allocations never hide
another's: it allocates the inputs (``a``, ``b``: [B, d] float32 with gradients, the model's
logit scale and bias), resets the peak, runs forward + backward ``--reps`` times and reports the
peak above that baseline (CPU: peak RSS via /proc/self/clear_refs; CUDA: max_memory_allocated)
and the fastest repetition. A naive run whose estimated peak does not fit the machine is not
started; the table says so with the estimate.

A method is a function ``(loss, a, b, logit_scale, logit_bias, groups, block) -> None`` that
runs forward and backward; each in METHODS gets a column and a ratio to naive. ``naive`` and
``tiled`` take ``a``, ``b`` as the embeddings; ``tiled+gc`` takes them as the towers' inputs (say
frozen backbone features) and runs a whole step: two small trainable towers (``Linear(d, 2d)``,
GELU, ``Linear(2d, d)``, normalised) embed them ``--chunk`` rows at a time through
train/gradcache.py, with the tiled loss on all B embeddings; its memory includes the towers'
activations for one chunk, its time the towers' two forwards and backward.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "loss_memory.json"
GIB = 2**30
# The naive loss keeps about this many B×B float32 arrays alive at its peak (logits, both
# log-softmaxes, their gradients); measured runs refine it (see estimate()).
NAIVE_COPIES = {"clip": 6.0, "siglip": 6.0}


def _losses():
    from jointspace.objectives import clip_loss, siglip_loss, tiled_clip_loss, tiled_siglip_loss
    from jointspace.objectives.masks import positive_pairs

    return clip_loss, siglip_loss, tiled_clip_loss, tiled_siglip_loss, positive_pairs


def naive(loss, a, b, logit_scale, logit_bias, groups, block) -> None:
    """Today's objective path: the dense positives mask and the full logits."""
    clip_loss, siglip_loss, _, _, positive_pairs = _losses()
    positives = positive_pairs(groups)
    if loss == "clip":
        value = clip_loss(a, b, logit_scale, positives)
    else:
        value = siglip_loss(a, b, logit_scale, logit_bias, positives)
    value.backward()


def tiled(loss, a, b, logit_scale, logit_bias, groups, block) -> None:
    """objectives/tiled.py: block × block tiles, masks from the group ids."""
    _, _, tiled_clip_loss, tiled_siglip_loss, _ = _losses()
    if loss == "clip":
        value = tiled_clip_loss(a, b, logit_scale, groups=groups, block=block)
    else:
        value = tiled_siglip_loss(a, b, logit_scale, logit_bias, groups=groups, block=block)
    value.backward()


_STEP: dict[tuple, tuple] = {}  # the towers and objective of tiled+gc, built once per child


def _step_parts(loss: str, dim: int, block: int, device) -> tuple:
    """A JointModel of two MLP towers and the tiled objective, as the trainer would build them."""
    key = (loss, dim, block)
    if key not in _STEP:
        import torch
        from torch import nn

        from jointspace.config import ModelConfig, ObjectiveConfig
        from jointspace.encoders.base import Tower
        from jointspace.models.joint import JointModel
        from jointspace.objectives.base import logit_init
        from jointspace.objectives.combined import build_objective

        class MLPTower(Tower):
            def __init__(self, embed_dim: int):
                super().__init__(embed_dim, {})
                self.body = nn.Sequential(nn.Linear(embed_dim, 2 * embed_dim), nn.GELU())
                self.head = nn.Linear(2 * embed_dim, embed_dim)

            def pooled(self, x):
                return self.body(x)

        torch.manual_seed(0)
        towers = {"image": MLPTower(dim), "text": MLPTower(dim)}
        model = JointModel(towers, ModelConfig(embed_dim=dim)).to(device).train()
        objective = build_objective([ObjectiveConfig(loss, {"block": block})])
        if (init := logit_init(objective)) is not None:
            model.add_logit_bias(init.bias, init.scale)
            model.to(device)
        _STEP[key] = (model, objective)
    return _STEP[key]


def tiled_grad_cache(loss, a, b, logit_scale, logit_bias, groups, block) -> None:
    """A training step: towers in chunks (train/gradcache.py), the tiled loss on all rows."""
    import torch

    from jointspace.data.collate import Batch
    from jointspace.train.gradcache import cached_forward_backward

    model, objective = _step_parts(loss, a.shape[1], block, a.device)
    inputs = {"image": a.detach(), "text": b.detach()}
    index = torch.arange(len(a), device=a.device)
    batch = Batch(inputs, {m: groups.get(m, index) for m in inputs}, index)
    model.zero_grad(set_to_none=False)  # gradients stay allocated: part of the baseline
    cached_forward_backward(model, objective, batch, chunk=CHUNK[0])


CHUNK = [4096]  # rows per tower chunk (--chunk)
Method = Callable[..., None]
METHODS: dict[str, Method] = {"naive": naive, "tiled": tiled, "tiled+gc": tiled_grad_cache}


# ---------------------------------------------------------------- child: one measured run


def _rss_kib() -> tuple[int, int]:
    status = Path("/proc/self/status").read_text()
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    return hwm, rss


def child(
    loss: str,
    method: str,
    size: int,
    dim: int,
    block: int,
    reps: int,
    device: str,
    captions_per_image: int,
    chunk: int,
) -> dict:
    import torch
    import torch.nn.functional as F

    CHUNK[0] = chunk
    torch.manual_seed(0)
    dev = torch.device(device)
    run = METHODS[method]
    warm = [torch.randn(256, dim, device=dev, requires_grad=True) for _ in range(2)]
    scale0 = torch.tensor(2.0, device=dev, requires_grad=True)
    # Imports, thread pools and BLAS buffers come before the baseline: not part of the loss.
    run(loss, *warm, scale0, scale0, {"text": torch.arange(256, device=dev)}, block)
    del warm
    a = F.normalize(torch.randn(size, dim, device=dev), dim=-1).requires_grad_()
    b = F.normalize(torch.randn(size, dim, device=dev), dim=-1).requires_grad_()
    logit_scale = torch.tensor(math.log(1 / 0.07), device=dev, requires_grad=True)
    logit_bias = torch.tensor(-10.0, device=dev, requires_grad=True)
    rows = torch.arange(size, device=dev)
    groups = {"image": rows // captions_per_image, "text": rows}
    cuda = dev.type == "cuda"
    # The baseline: inputs allocated, their gradients too (every method writes them).
    a.grad, b.grad = torch.zeros_like(a), torch.zeros_like(b)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS to the current RSS
        baseline = _rss_kib()[1] * 1024
    times, cpu = [], []
    for _ in range(reps):
        start, start_cpu = time.perf_counter(), time.process_time()
        run(loss, a, b, logit_scale, logit_bias, groups, block)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    peak = torch.cuda.max_memory_allocated() if cuda else _rss_kib()[0] * 1024
    return {
        "seconds": min(times),
        "all_seconds": times,
        "cpu_seconds": min(cpu),
        "peak_extra_bytes": peak - baseline,
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------- parent: the table


def memory_budget() -> float:
    """Bytes a naive run may take: 90% of what is available, at most 75% of the machine (it is
    shared: a run that swaps or meets the OOM killer measures nothing)."""
    meminfo = Path("/proc/meminfo").read_text()
    total, available = (
        int(re.search(rf"{key}:\s+(\d+)", meminfo).group(1)) * 1024
        for key in ("MemTotal", "MemAvailable")
    )
    return min(0.9 * available, 0.75 * total)


def merge(before: dict | None, new: dict) -> dict:
    """Two rounds of one method: the fastest repetition of either, the larger peak."""
    if before is None or "error" in before or "error" in new:
        return new if before is None or "error" in before else before
    return {
        **new,
        "seconds": min(before["seconds"], new["seconds"]),
        "all_seconds": before["all_seconds"] + new["all_seconds"],
        "cpu_seconds": min(before["cpu_seconds"], new["cpu_seconds"]),
        "peak_extra_bytes": max(before["peak_extra_bytes"], new["peak_extra_bytes"]),
    }


def estimate(loss: str, size: int, measured: dict[int, int]) -> float:
    """Naive peak bytes at ``size``: scaled as B² from the largest measured run, else a rule."""
    if measured:
        largest = max(measured)
        return measured[largest] * (size / largest) ** 2
    return NAIVE_COPIES[loss] * 4 * size**2


def run_child(args, loss: str, method: str, size: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        loss,
        method,
        str(size),
        str(args.dim),
        str(args.block),
        str(args.reps if size <= args.reps_up_to else 1),
        args.device,
        str(args.captions_per_image),
        str(args.chunk),
    ]
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["exit " + str(done.returncode)])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def fmt_gib(n: float) -> str:
    return f"{n / GIB:.2f}"


def table(rows: list[dict], methods: list[str]) -> str:
    head = ["loss", "B"]
    for m in methods:
        head += [f"{m} GiB", f"{m} s"]
    for m in methods[1:]:
        head += [f"{m}/naive time", f"{m} memory saved"]
    step = {"tiled", "tiled+gc"} <= set(methods)
    if step:
        head += ["tiled+gc/tiled time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["loss"], f"{row['size']:,}"]
        for m in methods:
            r = row[m]
            if "skipped" in r:
                cells += [f"(~{fmt_gib(r['estimate_bytes'])} est.)", "skipped"]
            elif "error" in r:
                cells += ["not run", "—"] if r["error"] == "not run" else ["error", "error"]
            else:
                cells += [fmt_gib(r["peak_extra_bytes"]), f"{r['seconds']:.2f}"]
        naive_row = row.get("naive", {})
        for m in methods[1:]:
            r = row[m]
            if "seconds" in r and "seconds" in naive_row:
                cells.append(f"{r['seconds'] / naive_row['seconds']:.2f}×")
                cells.append(
                    f"{naive_row['peak_extra_bytes'] / max(r['peak_extra_bytes'], 1):.0f}×"
                )
            elif "seconds" in r and "estimate_bytes" in naive_row:
                saved = naive_row["estimate_bytes"] / max(r["peak_extra_bytes"], 1)
                cells += ["—", f"~{saved:.0f}× (est.)"]
            else:
                cells += ["—", "—"]
        if step:
            a, b = row["tiled"], row["tiled+gc"]
            ok = "seconds" in a and "seconds" in b
            cells.append(f"{b['seconds'] / a['seconds']:.2f}×" if ok else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(rows: list[dict]) -> dict:
    """The issue's targets, per loss: B = 65,536 in < 2 GiB extra; tiled ≤ 1.2× naive's time."""
    out = {}
    for loss in sorted({r["loss"] for r in rows}):
        mine = [r for r in rows if r["loss"] == loss]
        big = [r["tiled"] for r in mine if r["size"] == 65536 and "peak_extra_bytes" in r["tiled"]]
        ratios = [
            r["tiled"]["seconds"] / r["naive"]["seconds"]
            for r in mine
            if "seconds" in r.get("tiled", {}) and "seconds" in r.get("naive", {})
        ]
        out[loss] = {
            "tiled_65536_gib": big[0]["peak_extra_bytes"] / GIB if big else None,
            "memory_met": bool(big) and big[0]["peak_extra_bytes"] < 2 * GIB,
            "worst_time_ratio": max(ratios) if ratios else None,
            "time_met": bool(ratios) and max(ratios) <= 1.2,
        }
        step = [r.get("tiled+gc", {}) for r in mine if r["size"] == 65536]
        if step and "peak_extra_bytes" in step[0]:  # the whole step, towers included
            out[loss]["tiled+gc_65536_gib"] = step[0]["peak_extra_bytes"] / GIB
    return out


def describe(goals: dict) -> str:
    lines = []
    for loss, g in goals.items():
        memory = (
            "not run"
            if g["tiled_65536_gib"] is None
            else f"{g['tiled_65536_gib']:.2f} GiB ({'met' if g['memory_met'] else 'NOT met'})"
        )
        ratio = g["worst_time_ratio"]
        time_ = (
            "no B where both ran"
            if ratio is None
            else f"worst {ratio:.2f}× ({'met' if g['time_met'] else 'NOT met'})"
        )
        lines.append(
            f"- {loss}: B=65,536 tiled < 2 GiB extra: {memory}; tiled ≤ 1.2× naive: {time_}"
        )
        if "tiled+gc_65536_gib" in g:
            lines.append(
                f"  a whole step (tiled + grad cache) at 65,536: {g['tiled+gc_65536_gib']:.2f} GiB"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="4096,8192,16384,32768,65536,131072")
    parser.add_argument("--losses", default="clip,siglip")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--block", type=int, default=None, help="tile rows (default: the kernels')")
    parser.add_argument("--reps", type=int, default=3, help="repetitions; the fastest is reported")
    parser.add_argument("--reps-up-to", type=int, default=8192, help="larger B: one repetition")
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per method")
    parser.add_argument("--rounds-up-to", type=int, default=16384, help="larger B: one round")
    parser.add_argument("--threads", type=int, default=None, help="OMP/MKL threads per run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--captions-per-image",
        type=int,
        default=1,
        help="rows sharing an image id (5: COCO-like duplicates to mask)",
    )
    parser.add_argument(
        "--memory-gib",
        type=float,
        default=None,
        help="memory a naive run may use (default: see memory_budget; CUDA: 90%% of the GPU)",
    )
    parser.add_argument("--siglip-up-to", type=int, default=None, help="largest B for SigLIP")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--chunk", type=int, default=4096, help="tiled+gc: rows per tower chunk")
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        help="combine result files of runs made apart (say, the largest B in a process of its "
        "own) into --out, rows joined by loss and B, and print their table",
    )
    parser.add_argument("--child", nargs=9, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.merge:
        merge_files(args.merge, args.out)
        return
    if args.child:
        loss, method, size, dim, block, reps, device, cpi, chunk = args.child
        numbers = (int(size), int(dim), int(block), int(reps))
        result = child(loss, method, *numbers, device, int(cpi), int(chunk))
        print(json.dumps(result))
        return
    if args.block is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from jointspace.objectives.tiled import DEFAULT_BLOCK

        args.block = DEFAULT_BLOCK
    if args.memory_gib is not None:
        budget = args.memory_gib * GIB
    elif args.device.startswith("cuda"):
        import torch

        budget = torch.cuda.get_device_properties(torch.device(args.device)).total_memory * 0.9
    else:
        budget = memory_budget()
    methods = args.methods.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[dict] = []
    load_before = os.getloadavg()
    for loss in args.losses.split(","):
        measured: dict[int, int] = {}
        for size in sizes:
            if loss == "siglip" and args.siglip_up_to and size > args.siglip_up_to:
                continue
            row: dict = {"loss": loss, "size": size}
            # Rounds alternate the methods' order, so a change in machine load hits both.
            rounds = args.rounds if size <= args.rounds_up_to else 1
            for turn in range(rounds):
                for method in methods if turn % 2 == 0 else methods[::-1]:
                    need = estimate(loss, size, measured)
                    if method == "naive" and need > budget:
                        row[method] = {"skipped": "does not fit", "estimate_bytes": need}
                        continue
                    result = merge(row.get(method), run_child(args, loss, method, size))
                    row[method] = result
                    if method == "naive" and "peak_extra_bytes" in result:
                        measured[size] = result["peak_extra_bytes"]
                    print(f"{loss} B={size} {method}: {result}", file=sys.stderr, flush=True)
            rows.append(row)
            save(args, rows, methods, budget, load_before)  # a long run keeps what it measured
    goals = save(args, rows, methods, budget, load_before)
    print(table(rows, methods))
    print()
    print(describe(goals))


def merge_files(paths: list[Path], out: Path) -> None:
    """One report (and table) from several: each (loss, B) row gets every file's methods."""
    reports = [json.loads(p.read_text()) for p in paths]
    rows: dict[tuple[str, int], dict] = {}
    methods: list[str] = []
    for report in reports:
        for row in report["rows"]:
            rows.setdefault((row["loss"], row["size"]), {}).update(row)
            methods += [m for m in report.get("methods", METHODS) if m in row]
    methods = [m for m in METHODS if m in methods]
    ordered = sorted(rows.values(), key=lambda r: (r["loss"] != "clip", r["loss"], r["size"]))
    for row in ordered:  # a skipped naive run: estimated from the largest measured in any file
        measured = {
            r["size"]: r["naive"]["peak_extra_bytes"]
            for r in ordered
            if r["loss"] == row["loss"] and "peak_extra_bytes" in r.get("naive", {})
        }
        need = estimate(row["loss"], row["size"], measured) if measured else None
        if "skipped" in row.get("naive", {}) and need is not None:
            row["naive"]["estimate_bytes"] = need
        elif "naive" not in row and need is not None and need > reports[0]["budget_bytes"]:
            row["naive"] = {"skipped": "does not fit", "estimate_bytes": need}  # left out: too big
    for row in ordered:  # a method no file ran for this row: the table says so
        for m in methods:
            row.setdefault(m, {"error": "not run"})
    goals = targets(ordered) if {"naive", "tiled"} <= set(methods) else {}
    merged = {
        **{k: v for k, v in reports[0].items() if k not in ("rows", "targets", "command")},
        "commands": [r["command"] for r in reports],
        "merged_from": [str(p) for p in paths],
        "load_averages": [[r["load_average_before"], r["load_average_after"]] for r in reports],
        "methods": methods,
        "rows": ordered,
        "targets": goals,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=2) + "\n")
    tmp.replace(out)
    print(table(ordered, methods))
    print()
    print(describe(goals))


def save(args, rows: list[dict], methods: list[str], budget: float, load_before) -> dict:
    """Write the results so far to ``args.out`` (atomically); return the targets."""
    goals = targets(rows) if {"naive", "tiled"} <= set(methods) else {}
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "dim": args.dim,
        "block": args.block,
        "chunk": args.chunk,
        "device": args.device,
        "captions_per_image": args.captions_per_image,
        "budget_bytes": budget,
        "threads": args.threads or os.environ.get("OMP_NUM_THREADS") or os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "methods": methods,
        "rows": rows,
        "targets": goals,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.out)
    return goals


if __name__ == "__main__":
    main()
