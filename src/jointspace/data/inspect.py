"""Dataset inspection: what a manifest holds and what is wrong with it, before any training."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

import numpy as np
from PIL import Image

from jointspace.data.manifest import FILE_COLUMNS, MODALITY_COLUMNS, Manifest, is_absent
from jointspace.data.overlap import file_digests, split_overlaps
from jointspace.data.validate import find_problems

TOP_LABELS = 20
_PUNCTUATION = re.compile(r"[^\w\s]")


def inspect_manifest(manifest: Manifest) -> dict[str, Any]:
    """A JSON-ready report: counts, modality coverage, histograms, duplicates and bad rows."""
    report: dict[str, Any] = {"manifest": str(manifest.path), "rows": len(manifest)}
    report["splits"] = (
        dict(Counter(r.get("split", "") for r in manifest.rows))
        if "split" in manifest.columns
        else {}
    )
    report["modalities"] = {
        m: {
            "present": sum(1 for r in manifest.rows if not is_absent(r[m])),
            "missing": sum(1 for r in manifest.rows if is_absent(r[m])),
        }
        for m in MODALITY_COLUMNS
        if m in manifest.columns
    }
    if "label" in manifest.columns:
        counts = Counter(r["label"] for r in manifest.rows)
        report["labels"] = {"distinct": len(counts), "top": dict(counts.most_common(TOP_LABELS))}
    texts = (
        [t for t in manifest.column("text") if not is_absent(t)]
        if "text" in manifest.columns
        else []
    )
    if texts:  # absent (empty) captions are counted under "modalities", not as captions
        report["captions"] = caption_stats(texts)
    digests = {c: file_digests(manifest, c) for c in FILE_COLUMNS if c in manifest.columns}
    if "image" in manifest.columns:
        report["images"] = image_stats(manifest, digests["image"])
    report["split_overlap"] = [
        {"column": o.column, "splits": [o.a, o.b], "count": o.count, "examples": o.examples}
        for o in split_overlaps(manifest, digests)
    ]
    problems = find_problems(manifest)
    report["problems"] = [p.describe(manifest.path) for p in problems]
    return report


def caption_stats(texts: list[str]) -> dict[str, Any]:
    """Word-count histogram and groups of captions equal up to case, punctuation and spacing."""
    lengths = np.array([len(t.split()) for t in texts])
    counts, edges = np.histogram(lengths, bins=min(10, max(1, int(lengths.max()))))
    groups = defaultdict(set)
    for text in texts:
        groups[" ".join(_PUNCTUATION.sub(" ", text.lower()).split())].add(text)
    near = [sorted(g) for g in groups.values() if len(g) > 1]
    return {
        "words": {
            "min": int(lengths.min()),
            "mean": float(lengths.mean()),
            "max": int(lengths.max()),
        },
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
        "distinct": len(set(texts)),
        "near_duplicates": near,
    }


def image_stats(manifest: Manifest, digests: dict[str, str] | None = None) -> dict[str, Any]:
    """Sizes read from headers, and distinct files whose bytes are identical."""
    digests = file_digests(manifest, "image") if digests is None else digests
    sizes, by_hash = Counter(), defaultdict(list)
    for value, digest in digests.items():
        by_hash[digest].append(value)
        try:
            with Image.open(manifest.resolve(value)) as image:  # the header only
                sizes[f"{image.width}x{image.height}"] += 1
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue  # reported among the problems
    return {
        "distinct": sum(len(v) for v in by_hash.values()),
        "sizes": dict(sizes.most_common()),
        "duplicates": [sorted(v) for v in by_hash.values() if len(v) > 1],
    }
