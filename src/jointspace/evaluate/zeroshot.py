"""Zero-shot classification: compare items with embedded class descriptions (CLIP-style)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from jointspace.data.manifest import Manifest, ManifestError
from jointspace.evaluate.retrieval import embed_values
from jointspace.models.joint import JointModel

# A small ensemble in the spirit of CLIP's ImageNet prompts; "{}" is the class name.
TEMPLATES = ("{}", "a {}", "an image of {}", "a picture of a {}", "an icon of {}")


def class_name(label: str) -> str:
    """A readable class name from a label: ``food-fruit`` → ``food fruit``."""
    return " ".join(label.replace("-", " ").replace("_", " ").split())


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
        raise ValueError(f"templates must each contain '{{}}' for the class name: {templates}")
    prompts = [t.format(name) for name in names for t in templates]
    embedded = model.encode(prompts, modality, batch_size=256)
    return ensemble(embedded.reshape(len(names), len(templates), -1))


@dataclass
class ZeroShotResult:
    """Top-K accuracies, per-class accuracy and the confusion matrix (rows: true class)."""

    labels: list[str]
    metrics: dict[str, float]
    per_class: dict[str, float]
    confusion: np.ndarray
    predictions: np.ndarray = field(repr=False)
    targets: np.ndarray = field(repr=False)


def zero_shot_scores(
    scores: np.ndarray, targets: np.ndarray, labels: Sequence[str], ks: Sequence[int] = (1, 5)
) -> ZeroShotResult:
    """Score ``[items, classes]`` similarities against integer ``targets``."""
    order = np.argsort(-scores, axis=1, kind="stable")
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
    metrics["chance_top1"] = 1.0 / len(labels)
    return ZeroShotResult(list(labels), metrics, per_class, confusion, predictions, targets)


def evaluate_zero_shot(
    model: JointModel,
    manifest: Manifest,
    *,
    modality: str = "image",
    templates: Sequence[str] = TEMPLATES,
    names: Mapping[str, str] | None = None,
    ks: Sequence[int] = (1, 5),
) -> ZeroShotResult:
    """Classify each unique ``modality`` item of ``manifest`` among the manifest's labels."""
    items, targets, labels = labelled_items(manifest, modality)
    names = names or {}
    classes = class_embeddings(model, [names.get(lb, class_name(lb)) for lb in labels], templates)
    embedded = embed_values(model, manifest, modality, items)
    return zero_shot_scores(embedded @ classes.T, targets, labels, ks)


def labelled_items(manifest: Manifest, modality: str) -> tuple[list[str], np.ndarray, list[str]]:
    """Unique items of a modality, each one's label index, and the sorted label list."""
    first: dict[str, str] = {}
    for number, row in enumerate(manifest.rows, start=1):
        if not row.get("label"):
            raise ManifestError(
                f"{manifest.path}, row {number}, column 'label': empty, but zero-shot "
                "classification needs a label on every row"
            )
        first.setdefault(row[modality], row["label"])
    labels = sorted(set(first.values()))
    if len(labels) < 2:
        raise ManifestError(f"{manifest.path}: zero-shot needs 2 or more labels, found {labels}")
    index = {label: i for i, label in enumerate(labels)}
    return list(first), np.array([index[lb] for lb in first.values()]), labels
