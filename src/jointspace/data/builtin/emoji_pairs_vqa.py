"""Built-in ``emoji-pairs-vqa``: questions about the emoji-pairs images, answered exactly.

The same images, seed and splits as ``emoji-pairs`` (val/test are new combinations of emoji
that training shows); four questions per image. Answers are emoji names, ``yes`` and ``no``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from jointspace.atomic import atomic_dir
from jointspace.data.builtin.digits_vqa import article, balanced_yes
from jointspace.data.builtin.emoji import png_bytes
from jointspace.data.builtin.emoji_pairs import Pair, render_pairs
from jointspace.data.builtin.target import dataset_dir, reuse_or_check
from jointspace.data.manifest import ManifestError

SEED = 1  # the questions' own draws; the images keep emoji-pairs' seed
TYPES = ("left_of", "right_of", "there", "left")
NEEDS = {"left_of": "both", "right_of": "both", "there": "both", "left": "image"}


def there_names(pairs: list[Pair], rng: np.random.Generator) -> list[str]:
    """X per image for "is there a X?": one of its two emoji for exactly half the images,
    else another emoji of the dataset."""
    names = sorted({p.left_name for p in pairs} | {p.right_name for p in pairs})
    yes = balanced_yes(np.zeros(len(pairs), dtype=int), rng)
    picked = []
    for pair, answer in zip(pairs, yes.tolist(), strict=True):
        if answer:
            picked.append((pair.left_name, pair.right_name)[rng.integers(2)])
        else:
            others = [n for n in names if n not in (pair.left_name, pair.right_name)]
            picked.append(others[rng.integers(len(others))])
    return picked


def questions(pair: Pair, x: str) -> list[tuple[str, str, str]]:
    """(question type, question, answer) for one image, in TYPES order."""
    there = "yes" if x in (pair.left_name, pair.right_name) else "no"
    return [
        ("left_of", f"what is left of the {pair.right_name}?", pair.left_name),
        ("right_of", f"what is right of the {pair.left_name}?", pair.right_name),
        ("there", f"is there {article(x)}?", there),
        ("left", "what is on the left?", pair.left_name),
    ]


def manifest_rows(pairs: list[Pair]) -> list[dict[str, str]]:
    """Four rows per image, one per question type, all in the image's split."""
    xs = there_names(pairs, np.random.default_rng(SEED))
    rows = []
    for pair, x in zip(pairs, xs, strict=True):
        for kind, question, answer in questions(pair, x):
            rows.append(
                {
                    "id": f"{pair.key}-{kind}",
                    "image": f"images/{pair.key}.png",
                    "text": question,
                    "label": answer,
                    "split": pair.split,
                    "meta_question_type": kind,
                    "meta_needs": NEEDS[kind],
                }
            )
    return rows


def check_answers_trained(rows: list[dict[str, str]]) -> None:
    """Every val/test answer is a class that training shows (a classifier knows no others)."""
    trained = {r["label"] for r in rows if r["split"] == "train"}
    if unseen := sorted({r["label"] for r in rows} - trained):
        raise ManifestError(f"emoji-pairs-vqa: answers never seen in train: {unseen[:5]}")


def build_emoji_pairs_vqa(
    root: Path | None = None, *, force: bool = False, size: int = 64, overwrite: bool = False
) -> Path:
    """Write the dataset under ``root/emoji-pairs-vqa-SIZE`` once (atomically); return its
    manifest path."""
    target = dataset_dir(root, f"emoji-pairs-vqa-{size}")
    manifest = target / "manifest.csv"
    if reuse_or_check(target, force=force, overwrite=overwrite):
        return manifest
    pairs = render_pairs(size)
    rows = manifest_rows(pairs)
    check_answers_trained(rows)
    with atomic_dir(target) as tmp:
        (tmp / "images").mkdir()
        for pair in pairs:
            (tmp / "images" / f"{pair.key}.png").write_bytes(png_bytes(pair.image))
        pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False, lineterminator="\n")
    return manifest
