"""Encoding speed: jointspace's encode paths vs sentence-transformers on all-MiniLM-L6-v2, and
EfficientNet-Lite0 images/s vs the machine's FLOP bound.

Text: one corpus of sentences of varied length built from the built-in emoji data (names,
keywords, groups), encoded by ``SentenceTransformer(<MiniLM dir>).encode`` and by a jointspace
model holding the same MiniLM (mean pooling, identity projection, 256-token limit) with each
backend (eager, bf16, int8, onnx, and auto = the probe's pick), interleaved round by round in
one process; texts/s for the corpus, single-query latency, the cosine of every backend's
vectors to sentence-transformers', and each backend's first call on 256 texts (its build, for
auto the probe). Images: the EfficientNet-Lite0 tower on preprocessed 224-px batches (eager,
bf16, onnx), against FLOPs per image (torch's FlopCounterMode) divided into the float32 matmul
rate measured here. Usage:
python benchmarks/encode.py [--texts 6000] [--rounds 3] [--slices 8] [--batch-size 64]
    [--queries 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from jointspace.config import ModelConfig, TowerConfig
from jointspace.data.builtin.emoji import load_emoji
from jointspace.encoders.pretrained_text import resolve_checkpoint
from jointspace.models.build import build_model
from jointspace.models.inference import Inference, configure_threads
from jointspace.report.markdown import markdown_table

BACKENDS = ("eager", "bf16", "int8", "onnx", "auto")


def corpus(count: int, seed: int = 0) -> list[str]:
    """Sentences of 2 to ~60 tokens from the emoji data: names, keyword lists, descriptions."""
    texts = []
    for e in load_emoji():
        texts.append(e.name)
        texts.append(f"{e.name}: {', '.join(e.keywords)}")
        texts.append(
            f"An emoji from the {e.group} group, subgroup {e.subgroup.replace('-', ' ')}, that "
            f"shows {e.name}; people search for it with {' or '.join(e.keywords)}."
        )
    texts = sorted(set(texts))
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.permutation(len(texts))[:count]]


def minilm_model(batch_limit: int = 256):
    """A jointspace model whose text tower is exactly sentence-transformers' MiniLM."""
    text = TowerConfig("hf_text", dict(path="all-MiniLM-L6-v2", max_len=batch_limit))
    model = build_model(ModelConfig(embed_dim=384, towers={"text": text})).eval()
    with torch.no_grad():
        model.towers["text"].head.weight.copy_(torch.eye(384))  # identity projection
    return model


def matmul_gflops(size: int = 2048, seconds: float = 2.0) -> float:
    """Float32 GFLOP/s of a square matmul on this machine's threads (best of repeated runs)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def text_benchmark(args) -> dict:
    from sentence_transformers import SentenceTransformer

    texts = corpus(args.texts)
    queries = texts[: args.queries]
    st = SentenceTransformer(str(resolve_checkpoint("all-MiniLM-L6-v2")), device="cpu")
    model = minilm_model()
    threads = torch.get_num_threads()
    inferences = {name: Inference(name, threads=threads) for name in BACKENDS}

    def ours(name: str, batch: list[str]) -> np.ndarray:
        model.inference = inferences[name]
        return model.encode(batch, "text", batch_size=args.batch_size)

    contenders = {"sentence-transformers": None, **dict.fromkeys(BACKENDS)}

    def encode(name: str, batch: list[str]) -> np.ndarray:
        if name == "sentence-transformers":
            return st.encode(batch, batch_size=args.batch_size, normalize_embeddings=True)
        return ours(name, batch)

    first_call = {}
    for name in contenders:  # warm-up; builds the int8 copy and ONNX graph, runs auto's probe
        first_call[name] = timed(lambda name=name: encode(name, texts[:256]))
        encode(name, queries[:2])
    reference = encode("sentence-transformers", texts)
    cosines = {}
    for name in BACKENDS:
        got = encode(name, texts)
        row = np.sum(got * reference, axis=1)
        cosines[name] = {"min": float(row.min()), "mean": float(row.mean())}
    # Each round encodes the corpus in slices, every contender on a slice before the next slice:
    # on a shared machine the load drifts within seconds, and short interleaved pieces share it.
    parts = [[texts[i] for i in part] for part in np.array_split(range(len(texts)), args.slices)]
    seconds: dict[str, list[list[float]]] = {name: [] for name in contenders}
    latency: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(args.rounds):
        for name in contenders:
            seconds[name].append([])
        for part in parts:
            for name in contenders:
                seconds[name][r].append(timed(lambda name=name, part=part: encode(name, part)))
        print(json.dumps({"round": r, **{n: round(sum(s[-1]), 2) for n, s in seconds.items()}}))
    for query in queries:
        for name in contenders:
            latency[name].append(timed(lambda name=name, query=query: encode(name, [query])))
    st_seconds = seconds["sentence-transformers"]
    rows = []
    for name in contenders:
        rates = [len(texts) / sum(s) for s in seconds[name]]
        ratios = [
            st / ours
            for a, b in zip(st_seconds, seconds[name], strict=True)
            for st, ours in zip(a, b, strict=True)
        ]
        rows.append(
            {
                "encoder": name,
                "texts_per_s": statistics.median(rates),
                "vs_st": statistics.median(ratios),  # over every (round, slice) pair
                "query_ms": 1000 * statistics.median(latency[name]),
                "query_vs_st": statistics.median(latency["sentence-transformers"])
                / statistics.median(latency[name]),
                "cosine_to_st": cosines.get(name, {"min": 1.0, "mean": 1.0}),
                "first_call_s": first_call[name],
            }
        )
    tokenizer = model.towers["text"].tokenizer
    lengths = [sum(e.attention_mask) for e in tokenizer.encode_batch(texts)]  # padding left out
    return {
        "texts": len(texts),
        "tokens": {"min": min(lengths), "median": statistics.median(lengths), "max": max(lengths)},
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "slices": args.slices,
        "queries": len(queries),
        "auto_choice": {
            "corpus": inferences["auto"].choices.get("text"),
        },
        "rows": rows,
    }


def image_benchmark(args, gflops: float) -> dict:
    image = TowerConfig("efficientnet_lite0", dict(image_size=224))
    model = build_model(ModelConfig(embed_dim=64, towers={"image": image})).eval()
    tower = model.towers["image"]
    pixels = torch.rand(args.images, 3, 224, 224) * 2 - 1
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        tower(pixels[:1])
    flops = counter.get_total_flops()
    bound = gflops * 1e9 / flops
    inferences = {name: Inference(name) for name in ("eager", "bf16", "onnx")}

    def encode(name: str) -> None:
        model.inference = inferences[name]
        model.encode(pixels, "image", batch_size=args.image_batch)

    for name in inferences:
        encode(name)
    seconds: dict[str, list[float]] = {name: [] for name in inferences}
    for _ in range(args.rounds):
        for name in inferences:
            seconds[name].append(timed(lambda name=name: encode(name)))
    rows = []
    for name, runs in seconds.items():
        rate = args.images / min(runs)
        rows.append({"encoder": name, "images_per_s": rate, "fraction_of_bound": rate / bound})
    return {
        "images": args.images,
        "batch_size": args.image_batch,
        "gflops_per_image": flops / 1e9,
        "bound_images_per_s": bound,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slices", type=int, default=8, help="interleaved pieces per round")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--image-batch", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/encode.json"))
    args = parser.parse_args()
    threads = configure_threads()
    load_before = os.getloadavg()[0]
    gflops = matmul_gflops()
    print(f"threads {threads}, fp32 matmul {gflops:.0f} GFLOP/s", flush=True)
    text = text_benchmark(args)
    images = image_benchmark(args, gflops)
    payload = {
        "machine": {
            "threads": threads,
            "cpus": os.cpu_count(),
            "matmul_gflops": gflops,
            # Other work on the machine: the 1-minute load average at start and end.
            "load_average": [load_before, os.getloadavg()[0]],
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "text": text,
        "image": images,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"\n{text_table(text)}\n\n{image_table(images)}\n→ {args.out}")


def text_table(text: dict) -> str:
    header = [
        "encoder",
        "texts/s",
        "vs ST",
        "query ms",
        "query vs ST",
        "cos to ST min / mean",
        "first 256 s",
    ]
    body = [
        [
            r["encoder"],
            f"{r['texts_per_s']:.0f}",
            f"{r['vs_st']:.2f}×",
            f"{r['query_ms']:.1f}",
            f"{r['query_vs_st']:.2f}×",
            f"{r['cosine_to_st']['min']:.6f} / {r['cosine_to_st']['mean']:.6f}",
            f"{r['first_call_s']:.2f}",
        ]
        for r in text["rows"]
    ]
    return markdown_table(header, body)


def image_table(images: dict) -> str:
    header = ["encoder", "images/s", "FLOP bound images/s", "fraction of bound"]
    body = [
        [
            r["encoder"],
            f"{r['images_per_s']:.1f}",
            f"{images['bound_images_per_s']:.0f}",
            f"{100 * r['fraction_of_bound']:.0f} %",
        ]
        for r in images["rows"]
    ]
    return markdown_table(header, body)


if __name__ == "__main__":
    main()
