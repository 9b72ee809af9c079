"""Cross-modal retrieval evaluation in both directions, correct with many captions per image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from jointspace.config import ConfigError, EvalConfig
from jointspace.data.manifest import Manifest, ManifestError
from jointspace.evaluate.errors import EvaluationError
from jointspace.evaluate.metrics import chance_metrics, retrieval_metrics, scored_queries
from jointspace.models.embedding import embed_items
from jointspace.models.joint import JointModel

RELEVANCE = ("pairs", "label")
RELEVANCE_MEANING = {
    "pairs": "relevant = paired in some manifest row",
    "label": "relevant = same label",
}


def relevance_matrix(
    manifest: Manifest, query: str, gallery: str, relevance: str = "pairs"
) -> tuple[list[str], list[str], np.ndarray]:
    """Unique query values, unique gallery values and which gallery items each query should find.

    ``pairs``: relevant if some manifest row pairs them (five captions → one image).
    ``label``: relevant if they share a ``label`` (class-level retrieval).
    """
    if relevance not in RELEVANCE:
        raise EvaluationError(f"relevance must be one of {', '.join(RELEVANCE)}, got {relevance!r}")
    if not manifest.rows:
        raise EvaluationError(f"{manifest.path}: no rows to evaluate")
    queries = list(dict.fromkeys(manifest.column(query)))
    items = list(dict.fromkeys(manifest.column(gallery)))
    q_index = {v: i for i, v in enumerate(queries)}
    g_index = {v: i for i, v in enumerate(items)}
    relevant = np.zeros((len(queries), len(items)), dtype=bool)
    if relevance == "pairs":
        for row in manifest.rows:
            relevant[q_index[row[query]], g_index[row[gallery]]] = True
        return queries, items, relevant
    q_labels, g_labels = _labels_of(manifest, query), _labels_of(manifest, gallery)
    names = {label: i for i, label in enumerate(sorted({*manifest.column("label")}))}
    # Multi-hot label matrices: sharing a label is one matrix product, not a Python double loop.
    q_hot = _multi_hot([q_labels[q] for q in queries], names)
    g_hot = _multi_hot([g_labels[g] for g in items], names)
    return queries, items, (q_hot @ g_hot.T) > 0


def _multi_hot(label_sets: list[set[str]], names: dict[str, int]) -> np.ndarray:
    hot = np.zeros((len(label_sets), len(names)), dtype=np.float32)
    for i, labels in enumerate(label_sets):
        hot[i, [names[label] for label in labels]] = 1.0
    return hot


def _labels_of(manifest: Manifest, column: str) -> dict[str, set[str]]:
    labels: dict[str, set[str]] = {}
    for number, row in enumerate(manifest.rows, start=1):
        if not row.get("label"):
            raise ManifestError(
                f"{manifest.path}, row {number}, column 'label': empty, but relevance='label' "
                "needs a label on every row"
            )
        labels.setdefault(row[column], set()).add(row["label"])
    return labels


def evaluate_retrieval(
    model: JointModel,
    manifest: Manifest,
    *,
    modalities: Sequence[str] = ("text", "image"),
    relevance: str = "pairs",
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 256,
) -> dict[str, float]:
    """Recall@K, mAP and median rank for every direction, each beside its exact chance level
    (``…/chance_R@1``); ``primary`` is the mean recall; ``relevance`` names the relevance."""
    data = embed_split(model, manifest, tuple(modalities), relevance, batch_size)
    return score_retrieval(data.scores, data.relevant, modalities, ks, relevance)


def evaluate_model(
    model: JointModel,
    manifest: Manifest,
    config: EvalConfig | None = None,
    modalities: Sequence[str] | None = None,
) -> dict[str, float]:
    """Retrieval metrics of ``model`` on ``manifest`` in both directions, as ``config`` says."""
    config = config or EvalConfig()
    if modalities is None:
        modalities = [m for m in model.modalities if m in manifest.modalities]
    if len(modalities) != 2:
        raise ConfigError(f"retrieval needs exactly two modalities, got {list(modalities)}")
    return evaluate_retrieval(
        model,
        manifest,
        modalities=modalities,
        relevance=config.relevance,
        ks=config.ks,
        batch_size=config.batch_size,
    )


@dataclass
class RetrievalEvaluator:
    """Retrieval on a held-out manifest, as the trainer calls it: ``evaluator(model)``."""

    manifest: Manifest
    config: EvalConfig
    modalities: Sequence[str] | None = None
    primary_metric: str = "primary"  # the mean recall over directions and ks

    def __call__(self, model: JointModel) -> dict[str, float]:
        return evaluate_model(model, self.manifest, self.config, self.modalities)


@dataclass
class Retrieval:
    """One split embedded once: unique values, embeddings and relevance for ``a`` → ``b``."""

    modalities: tuple[str, str]
    values: tuple[list[str], list[str]]
    embeddings: tuple[np.ndarray, np.ndarray]
    relevant: np.ndarray

    @cached_property
    def scores(self) -> np.ndarray:
        return self.embeddings[0] @ self.embeddings[1].T


def embed_split(
    model: JointModel,
    manifest: Manifest,
    modalities: tuple[str, str],
    relevance: str = "pairs",
    batch_size: int = 256,
) -> Retrieval:
    """Embed each unique value of both modalities once and build the relevance matrix."""
    a, b = modalities
    values_a, values_b, relevant = relevance_matrix(manifest, a, b, relevance)
    embedded = tuple(
        embed_items(model, manifest, m, v, batch_size=batch_size)[1]
        for m, v in ((a, values_a), (b, values_b))
    )
    for modality, values, x in zip((a, b), (values_a, values_b), embedded, strict=True):
        check_finite(x, modality, values)
    return Retrieval(modalities, (values_a, values_b), embedded, relevant)


def check_finite(x: np.ndarray, modality: str, values: Sequence[str]) -> None:
    """A clear error for NaN or infinite embeddings, naming the modality and a first bad value."""
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        first = values[int(np.argmax(bad))]
        raise EvaluationError(
            f"{int(bad.sum())} of {len(x)} {modality} embeddings are NaN or infinite (first: "
            f"{str(first)[:80]!r}); the model's weights are damaged or training diverged"
        )


def score_retrieval(
    scores: np.ndarray,
    relevant: np.ndarray,
    modalities: Sequence[str],
    ks: Sequence[int],
    relevance: str | None = None,
) -> dict[str, float | str]:
    """Metrics of an ``[a, b]`` score matrix in both directions beside their exact chance
    levels, the queries scored and excluded (no relevant item), and the primary mean recall."""
    a, b = modalities

    def direction(s: np.ndarray, r: np.ndarray) -> dict[str, float]:
        has = scored_queries(r)
        chance = chance_metrics(r, ks)
        counts = {"queries": int(has.sum()), "excluded_queries": int((~has).sum())}
        return retrieval_metrics(s, r, ks) | {f"chance_{k}": v for k, v in chance.items()} | counts

    metrics: dict[str, float | str] = _both_directions(a, b, relevant, direction, scores)
    recalls = [v for k, v in metrics.items() if "/R@" in k]
    metrics["mean_recall"] = float(np.mean(recalls))
    metrics["chance_mean_recall"] = float(
        np.mean([v for k, v in metrics.items() if "/chance_R@" in k])
    )
    metrics["primary"] = metrics["mean_recall"]
    if relevance is not None:
        metrics["relevance"] = relevance
    return metrics


def chance_retrieval(
    manifest: Manifest,
    *,
    modalities: Sequence[str] = ("text", "image"),
    relevance: str = "pairs",
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """What a uniformly random ranking reaches on the same queries, exactly (expected values)."""
    a, b = modalities
    _, _, relevant = relevance_matrix(manifest, a, b, relevance)
    return _both_directions(a, b, relevant, lambda _, r: chance_metrics(r, ks))


def _both_directions(a, b, relevant, score_fn, scores=None) -> dict[str, float]:
    scores = relevant if scores is None else scores  # chance only: no scores are read
    metrics: dict[str, float] = {}
    for name, s, r in ((f"{a}_to_{b}", scores, relevant), (f"{b}_to_{a}", scores.T, relevant.T)):
        metrics |= {f"{name}/{k}": v for k, v in score_fn(s, r).items()}
    return metrics
