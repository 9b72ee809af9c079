"""Joint-space diagnostics: modality gap, alignment, uniformity, effective rank and hubness.

Every function L2-normalises rows first (a no-op for normalised input), so numbers are on the
unit sphere and comparable across encoders whatever their output scale.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist
from scipy.special import logsumexp

from jointspace.evaluate.errors import EvaluationError

QUERY_CHUNK = 1024  # bounds hubness memory at QUERY_CHUNK × gallery size


def _unit_rows(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise EvaluationError(f"{name} must be 2-D (rows × dims), got shape {x.shape}")
    if len(x) < 2:
        raise EvaluationError(f"{name} needs at least 2 rows, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise EvaluationError(f"{name} contains NaN or infinite values (shape {x.shape})")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        # a zero vector has no direction, so it cannot be placed on the sphere
        raise EvaluationError(
            f"{name} has {int((norms == 0).sum())} all-zero rows (shape {x.shape})"
        )
    return x / norms


def _same_dims(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise EvaluationError(
            f"{names} must share one embedding dim, got shapes {a.shape} and {b.shape}"
        )


def modality_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between the two modalities' normalised centroids (Liang et al. 2022)."""
    a, b = _unit_rows(a, "a"), _unit_rows(b, "b")
    _same_dims(a, b, "a and b")
    return float(np.linalg.norm(a.mean(axis=0) - b.mean(axis=0)))


def alignment(x: np.ndarray, y: np.ndarray, alpha: float = 2) -> float:
    """Mean ||x_i - y_i||^alpha over positive pairs (Wang & Isola 2020); lower is closer."""
    x, y = _unit_rows(x, "x"), _unit_rows(y, "y")
    if x.shape != y.shape:
        raise EvaluationError(
            f"x and y must be row-aligned pairs of one shape, got {x.shape} and {y.shape}"
        )
    return float((np.linalg.norm(x - y, axis=1) ** alpha).mean())


def uniformity(x: np.ndarray, t: float = 2, max_points: int = 2000, seed: int = 0) -> float:
    """log mean_{i<j} exp(-t ||x_i - x_j||^2) (Wang & Isola 2020); more negative is more spread."""
    x = _unit_rows(x, "x")
    if len(x) > max_points:
        # pdist holds n²/2 distances, so subsample to keep memory bounded
        rng = np.random.default_rng(seed)
        x = x[rng.choice(len(x), size=max_points, replace=False)]
    sq = pdist(x, metric="sqeuclidean")
    # logsumexp avoids underflow of exp(-t d²) for large t
    return float(logsumexp(-t * sq) - np.log(len(sq)))


def effective_rank(x: np.ndarray) -> float:
    """exp(entropy) of the normalised singular values of the centred rows (Roy & Vetterli 2007)."""
    x = _unit_rows(x, "x")
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    if s.sum() == 0:
        return 0.0  # every row identical: no spread in any direction
    p = s[s > 0] / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def hubness(queries: np.ndarray, gallery: np.ndarray, k: int = 10) -> dict[str, float | int]:
    """Skewness, maximum and zero-fraction of gallery k-occurrence N_k (Radovanović et al. 2010)."""
    q, g = _unit_rows(queries, "queries"), _unit_rows(gallery, "gallery")
    _same_dims(q, g, "queries and gallery")
    if not 1 <= k <= len(g):
        raise EvaluationError(f"k={k} must be between 1 and the gallery size {len(g)}")
    counts = np.zeros(len(g), dtype=np.int64)
    for start in range(0, len(q), QUERY_CHUNK):
        scores = q[start : start + QUERY_CHUNK] @ g.T
        # stable sort so ties go to the lower gallery index, deterministically
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        counts += np.bincount(top.ravel(), minlength=len(g))
    centred = counts - counts.mean()
    std = centred.std()
    # equal occurrences everywhere means no hubs at all, not an undefined skew
    skew = float((centred**3).mean() / std**3) if std > 0 else 0.0
    return {
        "skewness": skew,
        "max_occurrence": int(counts.max()),
        "antihub_fraction": float((counts == 0).mean()),
    }


def _modality_diagnostics(name: str, x: np.ndarray) -> dict[str, float]:
    rank = effective_rank(x)
    # a centred n × d matrix has rank at most min(n - 1, d)
    n, d = np.shape(x)
    ceiling = min(n - 1, d)
    return {
        f"{name}/effective_rank": rank,
        f"{name}/effective_rank_fraction": rank / ceiling,
        f"{name}/uniformity": uniformity(x),
    }


def _hubness_diagnostics(prefix: str, q: np.ndarray, g: np.ndarray, k: int) -> dict[str, float]:
    # small galleries would otherwise make the default k invalid
    h = hubness(q, g, k=min(k, len(g)))
    return {
        f"{prefix}/hubness_skew": h["skewness"],
        f"{prefix}/hubness_max_occurrence": float(h["max_occurrence"]),
        f"{prefix}/antihub_fraction": h["antihub_fraction"],
    }


def diagnose(
    embeddings: dict[str, np.ndarray],
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    k: int = 10,
) -> dict[str, float]:
    """Flat diagnostics: per modality, between the first two modalities, and on ``pairs``."""
    if not embeddings:
        raise EvaluationError("embeddings is empty; pass at least one modality")
    out: dict[str, float] = {}
    for name, x in embeddings.items():
        out.update(_modality_diagnostics(name, x))
    names = list(embeddings)
    if len(names) >= 2:
        a, b = names[:2]
        out["modality_gap"] = modality_gap(embeddings[a], embeddings[b])
        out.update(_hubness_diagnostics(f"{a}_to_{b}", embeddings[a], embeddings[b], k))
        out.update(_hubness_diagnostics(f"{b}_to_{a}", embeddings[b], embeddings[a], k))
    if pairs is not None:
        out["alignment"] = alignment(*pairs)
    return out


def _gap(v: float) -> str:
    # Liang et al. 2022 measure a gap of about 0.8 for CLIP; 0.5 / 0.1 are our heuristic cut-offs
    if v > 0.5:
        return (
            "the two modalities occupy separate cones (large modality gap); cross-modal scores "
            "are offset, rankings may still be fine"
        )
    if v > 0.1:
        return "moderate modality gap: the modalities overlap only partly on the sphere"
    return "small modality gap: the modalities share one region of the sphere"


def _uniformity(v: float) -> str:
    # with t=2 on the unit sphere the value lies in [-4, 0] for large dims (Wang & Isola 2020)
    if v < -3:
        return "well spread over the sphere (uniformity near the -4 floor)"
    if v > -1:
        return "collapsed: embeddings crowd into a small region (uniformity near 0)"
    return "partly spread: embeddings cover only part of the sphere"


def _rank_fraction(v: float) -> str:
    # heuristic cut-offs; dimensional collapse in this sense is described by Jing et al. 2022
    if v < 0.1:
        return "dimensional collapse: the embeddings use only a few of their available directions"
    if v < 0.5:
        return "the embeddings use a moderate share of their available directions"
    return "the embeddings spread variance over most of their available directions"


def _hub_skew(v: float) -> str:
    # skew > 1 is the usual "strong hubness" cut-off (Radovanović et al. 2010 report S_Nk up to ~10)
    if v > 1:
        return "a few items are top-k neighbours of many queries (hubs); consider centring or CSLS"
    return "little hubness: top-k neighbours are spread fairly evenly over the gallery"


def _alignment(v: float) -> str:
    # for unit vectors with alpha=2, ||x - y||² = 2 - 2 cos, so mean cosine = 1 - v / 2
    return (
        f"positive pairs have mean cosine ≈ {1 - v / 2:.2f} (alignment, alpha=2; lower is closer)"
    )


def interpret(diagnostics: dict[str, float]) -> dict[str, str]:
    """One plain-English line per diagnostic key from :func:`diagnose` (default t, alpha, k)."""
    rules = {
        "modality_gap": _gap,
        "/uniformity": _uniformity,
        "/effective_rank_fraction": _rank_fraction,
        "/effective_rank": lambda v: f"the embeddings vary along about {v:.1f} directions",
        "/hubness_skew": _hub_skew,
        "/hubness_max_occurrence": lambda v: (
            f"the most popular gallery item is in {v:.0f} top-k lists"
        ),
        "/antihub_fraction": lambda v: (
            f"{v:.0%} of gallery items are in no query's top-k (antihubs)"
        ),
        "alignment": _alignment,
    }
    out = {}
    for key, value in diagnostics.items():
        rule = next((f for suffix, f in rules.items() if key.endswith(suffix)), None)
        out[key] = rule(value) if rule else "no interpretation available for this diagnostic"
    return out
