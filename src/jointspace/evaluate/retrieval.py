"""Cross-modal retrieval in every direction between the modalities, each over the rows having
both sides (an empty cell: absent); correct with many captions per image."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import combinations

import numpy as np

from jointspace.config import ConfigError, EvalConfig
from jointspace.data.complete import rows_having
from jointspace.data.manifest import Manifest, ManifestError
from jointspace.evaluate.errors import EvaluationError
from jointspace.evaluate.metrics import chance_metrics, retrieval_metrics, scored_queries
from jointspace.models.embedding import embed_items
from jointspace.models.joint import JointModel

log = logging.getLogger("jointspace")

RELEVANCE = ("pairs", "label")
RELEVANCE_MEANING = {
    "pairs": "relevant = paired in some manifest row",
    "label": "relevant = same label",
}


def having(manifest: Manifest, modalities: Sequence[str]) -> Manifest:
    """Only the rows whose cells of all ``modalities`` are non-empty (an empty cell: absent)."""
    for modality in modalities:
        manifest.column(modality)  # a missing column is a ManifestError naming the file
    return rows_having(manifest, modalities)[0]


def modality_pairs(modalities: Sequence[str]) -> list[tuple[str, str]]:
    """Each unordered pair once, in the order given: (a, b) stands for a → b and b → a."""
    return list(combinations(modalities, 2))


def relevance_matrix(
    manifest: Manifest, query: str, gallery: str, relevance: str = "pairs"
) -> tuple[list[str], list[str], np.ndarray]:
    """Unique query values, unique gallery values and which gallery items each query should find,
    over the rows having both ``query`` and ``gallery``.

    ``pairs``: relevant if some manifest row pairs them (five captions → one image).
    ``label``: relevant if they share a ``label`` (class-level retrieval).
    """
    if relevance not in RELEVANCE:
        raise EvaluationError(f"relevance must be one of {', '.join(RELEVANCE)}, got {relevance!r}")
    if not manifest.rows:
        raise EvaluationError(f"{manifest.path}: no rows to evaluate")
    manifest = having(manifest, (query, gallery))
    if not manifest.rows:
        raise EvaluationError(f"{manifest.path}: no row has both {query} and {gallery}")
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
    """Recall@K, mAP and median rank in every direction between ``modalities``, each over the rows
    having both and beside its exact chance level (``…/chance_R@1``); ``primary`` is the mean
    recall over all directions; ``relevance`` names the relevance. A pair that no row has both
    sides of is skipped, counted in ``skipped_pairs`` and named in ``skipped``."""
    retrievals, skipped = embed_pairs(model, manifest, tuple(modalities), relevance, batch_size)
    return score_pairs(retrievals, ks, relevance, skipped)


def evaluate_model(
    model: JointModel,
    manifest: Manifest,
    config: EvalConfig | None = None,
    modalities: Sequence[str] | None = None,
) -> dict[str, float]:
    """Retrieval metrics of ``model`` on ``manifest`` in every direction, as ``config`` says."""
    config = config or EvalConfig()
    if modalities is None:
        modalities = [m for m in model.modalities if m in manifest.modalities]
    if len(modalities) < 2:
        raise ConfigError(f"retrieval needs at least two modalities, got {list(modalities)}")
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
    """One pair of one split embedded: unique values, embeddings and relevance for ``a`` → ``b``."""

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
    """Embed each unique value of both modalities once (rows having both) and build relevance."""
    retrievals, _ = embed_pairs(model, manifest, modalities[:2], relevance, batch_size)
    if not retrievals:
        raise EvaluationError(
            f"{manifest.path}: no row has both {modalities[0]} and {modalities[1]}"
        )
    return retrievals[0]


def embed_pairs(
    model: JointModel,
    manifest: Manifest,
    modalities: Sequence[str],
    relevance: str = "pairs",
    batch_size: int = 256,
) -> tuple[list[Retrieval], list[tuple[str, str]]]:
    """One ``Retrieval`` per pair of ``modalities`` over the rows having both, every distinct item
    embedded once; and the pairs skipped because no row has both."""
    if not manifest.rows:
        raise EvaluationError(f"{manifest.path}: no rows to evaluate")
    pairs, skipped = [], []
    for a, b in modality_pairs(modalities):
        if having(manifest, (a, b)).rows:
            pairs.append(((a, b), relevance_matrix(manifest, a, b, relevance)))
        else:
            skipped.append((a, b))
    if not pairs:
        named = ", ".join(f"{a}–{b}" for a, b in skipped)
        raise EvaluationError(f"{manifest.path}: no row has both sides of any pair ({named})")
    wanted: dict[str, dict[str, None]] = {}
    for (a, b), (values_a, values_b, _) in pairs:
        wanted.setdefault(a, {}).update(dict.fromkeys(values_a))
        wanted.setdefault(b, {}).update(dict.fromkeys(values_b))
    rows: dict[str, dict[str, int]] = {}
    vectors: dict[str, np.ndarray] = {}
    for modality, values in wanted.items():
        listed = list(values)
        x = embed_items(model, manifest, modality, listed, batch_size=batch_size)[1]
        check_finite(x, modality, listed)
        rows[modality] = {value: i for i, value in enumerate(listed)}
        vectors[modality] = x
    retrievals = []
    for (a, b), (values_a, values_b, relevant) in pairs:
        embedded = tuple(
            vectors[m][[rows[m][v] for v in values]] for m, values in ((a, values_a), (b, values_b))
        )
        retrievals.append(Retrieval((a, b), (values_a, values_b), embedded, relevant))
    return retrievals, skipped


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
    return _summary(_both_directions(a, b, relevant, _scorer(ks), scores), relevance)


def score_pairs(
    retrievals: Sequence[Retrieval],
    ks: Sequence[int],
    relevance: str | None = None,
    skipped: Sequence[tuple[str, str]] = (),
) -> dict[str, float | str]:
    """``score_retrieval`` over every pair's two directions; ``primary`` is the mean recall over
    them all. Skipped pairs are counted (``skipped_pairs``), named (``skipped``) and logged."""
    metrics: dict[str, float | str] = {}
    for data in retrievals:
        a, b = data.modalities
        metrics |= _both_directions(a, b, data.relevant, _scorer(ks), data.scores)
    metrics = _summary(metrics, relevance)
    if skipped:
        named = ", ".join(f"{a}–{b}" for a, b in skipped)
        log.warning("retrieval: no row has both sides of %s: not evaluated", named)
        metrics["skipped_pairs"] = len(skipped)
        metrics["skipped"] = named
    return metrics


def _scorer(ks: Sequence[int]) -> Callable[[np.ndarray, np.ndarray], dict[str, float]]:
    def direction(s: np.ndarray, r: np.ndarray) -> dict[str, float]:
        has = scored_queries(r)
        chance = chance_metrics(r, ks)
        counts = {"queries": int(has.sum()), "excluded_queries": int((~has).sum())}
        return retrieval_metrics(s, r, ks) | {f"chance_{k}": v for k, v in chance.items()} | counts

    return direction


def _summary(metrics: dict, relevance: str | None) -> dict[str, float | str]:
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
    """What a uniformly random ranking reaches on the same queries, exactly (expected values),
    in every direction over the rows having both; pairs with no such row are left out."""
    metrics: dict[str, float] = {}
    for a, b in modality_pairs(modalities):
        if having(manifest, (a, b)).rows:
            _, _, relevant = relevance_matrix(manifest, a, b, relevance)
            metrics |= _both_directions(a, b, relevant, lambda _, r: chance_metrics(r, ks))
    if not metrics:
        raise EvaluationError(f"{manifest.path}: no row has both sides of any pair of {modalities}")
    return metrics


def _both_directions(a, b, relevant, score_fn, scores=None) -> dict[str, float]:
    scores = relevant if scores is None else scores  # chance only: no scores are read
    metrics: dict[str, float] = {}
    for name, s, r in ((f"{a}_to_{b}", scores, relevant), (f"{b}_to_{a}", scores.T, relevant.T)):
        metrics |= {f"{name}/{k}": v for k, v in score_fn(s, r).items()}
    return metrics
