"""Built-in ``digits-vqa``: questions about scikit-learn's real digits, answered exactly.

Four questions per image, one of each type; ``meta_needs`` says what a correct answer needs by
construction. Answers are classes: the ten digit words, ``yes`` and ``no``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jointspace.data.builtin.digits import WORDS, assign_splits, build_from_digits

SEED = 0
TYPES = ("identify", "parity", "compare", "verify")
NEEDS = {"identify": "image", "parity": "both", "compare": "both", "verify": "both"}
# "greater than K": K within this many of the digit, so the question alone says little.
COMPARE_WINDOW = 3
LARGEST_K = 8  # "greater than nine" would always be no


def balanced_yes(forced: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A yes/no per image, yes for exactly half of all images; ``forced`` holds +1 (must be
    yes), -1 (must be no) or 0 (free)."""
    answers = forced > 0
    free = np.flatnonzero(forced == 0)
    wanted = len(forced) // 2 - int(answers.sum())
    answers[rng.choice(free, min(max(wanted, 0), len(free)), replace=False)] = True
    return answers


def compare_thresholds(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """K per image for "is it greater than K?": yes for half the images (0 can never be more
    than K, 9 never at most K ≤ 8), K drawn uniformly from a window next to the digit."""
    forced = np.where(digits == 0, -1, np.where(digits > LARGEST_K, 1, 0))
    yes = balanced_yes(forced, rng)
    ks = np.empty(len(digits), dtype=int)
    for i, (digit, answer) in enumerate(zip(digits.tolist(), yes.tolist(), strict=True)):
        if answer:  # K < digit
            low, high = max(0, digit - COMPARE_WINDOW), digit - 1
        else:  # K >= digit
            low, high = digit, min(LARGEST_K, digit + COMPARE_WINDOW - 1)
        ks[i] = rng.integers(low, high + 1)
    return ks


def verify_words(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """W per image for "is this a W?": the true digit for half the images, else another one."""
    yes = balanced_yes(np.zeros(len(digits), dtype=int), rng)
    others = (digits + rng.integers(1, 10, len(digits))) % 10  # uniform over the other nine
    return np.where(yes, digits, others)


def article(noun: str) -> str:
    """``noun`` with "a" or "an" in front, by how it is said ("a one", "a unicorn", "an egg")."""
    vowel = noun[:1] in "aeiou" and not noun.startswith(("one", "uni", "eu", "use"))
    return f"{'an' if vowel else 'a'} {noun}"


def questions(digit: int, k: int, w: int) -> list[tuple[str, str, str]]:
    """(question type, question, answer) for one image, in TYPES order."""
    yes_no = ("no", "yes")
    return [
        ("identify", "what digit is this?", WORDS[digit]),
        ("parity", "is this digit even?", yes_no[digit % 2 == 0]),
        ("compare", f"is it greater than {WORDS[k]}?", yes_no[digit > k]),
        ("verify", f"is this {article(WORDS[w])}?", yes_no[digit == w]),
    ]


def manifest_rows(digits: np.ndarray) -> list[dict[str, str]]:
    """Four rows per image, one per question type, all in the image's split."""
    rng = np.random.default_rng(SEED)
    splits = assign_splits(digits, rng, held_out=())  # every digit in every split
    ks, ws = compare_thresholds(digits, rng), verify_words(digits, rng)
    rows = []
    for i, digit in enumerate(digits.tolist()):
        for kind, question, answer in questions(digit, int(ks[i]), int(ws[i])):
            rows.append(
                {
                    "id": f"{i:04d}-{kind}",
                    "image": f"images/{i:04d}.png",
                    "text": question,
                    "label": answer,
                    "split": splits[i],
                    "meta_question_type": kind,
                    "meta_needs": NEEDS[kind],
                }
            )
    return rows


def build_digits_vqa(
    root: Path | None = None, *, force: bool = False, overwrite: bool = False
) -> Path:
    """Write the dataset under ``root/digits-vqa`` once (atomically); return its manifest path."""
    return build_from_digits("digits-vqa", manifest_rows, root, force=force, overwrite=overwrite)
