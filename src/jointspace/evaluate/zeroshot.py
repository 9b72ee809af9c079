"""Zero-shot classification: compare items with embedded class descriptions (CLIP-style)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jointspace.data.manifest import Manifest, ManifestError, is_absent
from jointspace.evaluate.class_names import class_name, class_names
from jointspace.evaluate.errors import EvaluationError
from jointspace.evaluate.retrieval import check_finite
from jointspace.models.embedding import embed_items
from jointspace.models.joint import JointModel

__all__ = ["TEMPLATES", "class_name", "class_names", "evaluate_zero_shot", "zero_shot_scores"]

# A small ensemble in the spirit of CLIP's ImageNet prompts; "{}" is the class name.
TEMPLATES = ("{}", "a {}", "an image of {}", "a picture of a {}", "an icon of {}")


def ensemble(prompt_embeddings: np.ndarray) -> np.ndarray:
    """One class vector from its ``[templates, dim]`` prompt embeddings: mean of the
    normalised rows, renormalised."""
    unit = prompt_embeddings / np.linalg.norm(prompt_embeddings, axis=-1, keepdims=True)
    mean = unit.mean(axis=-2)
    return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


def class_embeddings(
    model: JointModel,
    names: Sequence[str],
    templates: Sequence[str] = TEMPLATES,
    modality: str = "text",
) -> np.ndarray:
    """``[classes, dim]``: every class name put in every template, embedded and ensembled."""
    if not templates or any("{}" not in t for t in templates):
        shown = ", ".join(repr(t) for t in templates) or "none"
        raise EvaluationError(f"templates must each contain '{{}}' for the class name: {shown}")
    prompts = [t.format(name) for name in names for t in templates]
    embedded = model.encode(prompts, modality, batch_size=256)
    check_finite(embedded, modality, prompts)
    return ensemble(embedded.reshape(len(names), len(templates), -1))


@dataclass
class ZeroShotResult:
    """Top-K accuracies, per-class accuracy and the confusion matrix (rows: true class);
    ``class_names`` and ``naming`` record which text stood for each label."""

    labels: list[str]
    metrics: dict[str, float]
    per_class: dict[str, float]
    confusion: np.ndarray
    predictions: np.ndarray = field(repr=False)
    targets: np.ndarray = field(repr=False)
    class_names: dict[str, str] = field(default_factory=dict)
    naming: str = "leaf"
    excluded_items: int = 0  # items carrying more than one label: no single right answer
    absent_rows: int = 0  # rows whose cell of the modality is empty: nothing to classify


def zero_shot_scores(
    scores: np.ndarray, targets: np.ndarray, labels: Sequence[str], ks: Sequence[int] = (1, 5)
) -> ZeroShotResult:
    """Score ``[items, classes]`` similarities against integer ``targets`` (ties count against
    the model, as in retrieval)."""
    if len(scores) == 0:
        raise EvaluationError("zero-shot has no items to classify")
    if not np.isfinite(scores).all():
        raise EvaluationError("zero-shot scores are NaN or infinite: the embeddings are not finite")
    is_target = np.arange(len(labels))[None, :] == targets[:, None]
    # A class tied with the true one ranks above it: constant scores must not look right.
    order = np.lexsort((is_target, -scores), axis=1)
    metrics = {
        f"top{k}": float((order[:, : min(k, len(labels))] == targets[:, None]).any(1).mean())
        for k in ks
    }
    predictions = order[:, 0]
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(confusion, (targets, predictions), 1)
    totals = confusion.sum(axis=1)
    per_class = {
        label: float(confusion[i, i] / totals[i]) for i, label in enumerate(labels) if totals[i]
    }
    metrics["mean_per_class"] = float(np.mean(list(per_class.values())))
    for k in ks:  # a random ranking of the classes: the true one in the top K with K / classes
        metrics[f"chance_top{k}"] = min(k, len(labels)) / len(labels)
    metrics["chance_mean_per_class"] = 1.0 / len(labels)
    return ZeroShotResult(list(labels), metrics, per_class, confusion, predictions, targets)


def evaluate_zero_shot(
    model: JointModel,
    manifest: Manifest,
    *,
    modality: str = "image",
    templates: Sequence[str] = TEMPLATES,
    names: str | Path | Mapping[str, str] = "leaf",
    ks: Sequence[int] = (1, 5),
) -> ZeroShotResult:
    """Classify each unique ``modality`` item of ``manifest`` among the manifest's labels.

    ``names``: how a label becomes the class name in the prompts: ``"leaf"`` (default,
    ``shapes/star_icons`` → "star icons"), ``"path"`` (the whole label, ``_``/``-`` → spaces),
    a ``{label: name}`` mapping or a JSON/YAML file holding one.
    """
    items, targets, labels, excluded = labelled_items(manifest, modality, with_excluded=True)
    absent = absent_rows(manifest, modality)
    mapping, naming = class_names(labels, names)
    classes = class_embeddings(model, [mapping[label] for label in labels], templates)
    _, embedded = embed_items(model, manifest, modality, items)
    check_finite(embedded, modality, items)
    result = zero_shot_scores(embedded @ classes.T, targets, labels, ks)
    result.class_names, result.naming, result.excluded_items = mapping, naming, excluded
    result.absent_rows = absent
    return result


def absent_rows(manifest: Manifest, modality: str) -> int:
    """How many rows have an empty (absent) ``modality`` cell: ``labelled_items`` skips them."""
    return sum(1 for row in manifest.rows if is_absent(row[modality]))


def labelled_items(manifest: Manifest, modality: str, with_excluded: bool = False):
    """Unique items of a modality, each one's label index, and the sorted label list (items
    with several different labels are left out; ``with_excluded`` also returns their count;
    rows without the modality, an empty cell, are skipped: ``absent_rows`` counts them)."""
    seen: dict[str, set[str]] = {}
    for number, row in enumerate(manifest.rows, start=1):
        if is_absent(row[modality]):
            continue
        if not row.get("label"):
            raise ManifestError(
                f"{manifest.path}, row {number}, column 'label': empty, but zero-shot "
                "classification needs a label on every row"
            )
        seen.setdefault(row[modality], set()).add(row["label"])
    first = {item: next(iter(found)) for item, found in seen.items() if len(found) == 1}
    labels = sorted(set(first.values()))
    if len(labels) < 2:
        raise ManifestError(
            f"{manifest.path}: zero-shot needs 2 or more labels among the rows with "
            f"{modality}, found {labels}"
        )
    index = {label: i for i, label in enumerate(labels)}
    found = (list(first), np.array([index[lb] for lb in first.values()]), labels)
    return (*found, len(seen) - len(first)) if with_excluded else found
