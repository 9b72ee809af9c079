"""Report figures, each written as a PNG; matplotlib's object API needs no display or pyplot."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from PIL import Image

from jointspace.atomic import atomic_path

MAX_LEGEND_LABELS = 10


def _subplots(width: float, height: float, columns: int = 1):
    figure = Figure(figsize=(width, height))
    return figure, figure.subplots(1, columns)


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    return path


def recall_curves(curves: Mapping[str, np.ndarray], chance: Mapping[str, np.ndarray], path: Path):
    """Recall@K against K for each direction, with random scores as dashed lines."""
    figure, ax = _subplots(6, 4)
    for i, (name, recall) in enumerate(curves.items()):
        ks = np.arange(1, len(recall) + 1)
        ax.plot(ks, 100 * recall, color=f"C{i}", label=name.replace("_to_", " → "))
        ax.plot(ks, 100 * chance[name], color=f"C{i}", linestyle="--", alpha=0.6)
    ax.set(xlabel="K", ylabel="Recall@K (%)", ylim=(0, 100), title="Recall@K (dashed: chance)")
    ax.legend()
    return _save(figure, path)


def similarity_heatmap(scores: np.ndarray, rows: Sequence[str], images: Sequence[Path], path: Path):
    """Cosine similarities of sampled captions (rows) against their images (columns)."""
    n = len(rows)
    figure, ax = _subplots(1.0 + 0.75 * n, 1.0 + 0.55 * n)
    shown = ax.imshow(scores, cmap="viridis")
    ax.set_yticks(range(n), [r[:40] for r in rows], fontsize=7)
    ax.set_xticks(range(n), [""] * n)
    for j, image in enumerate(images):
        _thumbnail(ax, image, (j, n - 0.1), zoom_px=26, box_alignment=(0.5, 1.0))
    ax.set_ylim(n + 0.6, -0.5)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{scores[i, j]:.2f}", ha="center", va="center", fontsize=6, color="w")
    figure.colorbar(shown, ax=ax, fraction=0.04)
    ax.set_title("caption × image similarity (diagonal: true pairs)")
    return _save(figure, path)


def embedding_map(
    points: np.ndarray,
    modalities: Sequence[str],
    labels: Sequence[str],
    path: Path,
    thumbnails: Mapping[int, Path] | None = None,
    method: str = "PCA",
):
    """A 2-D map of the joint space: marker by modality, colour by label, some thumbnails."""
    figure, ax = _subplots(8, 7)
    common = [lb for lb, _ in Counter(labels).most_common(MAX_LEGEND_LABELS)]
    colour = {lb: f"C{i}" for i, lb in enumerate(common)}
    markers = dict(zip(dict.fromkeys(modalities), "o^sD", strict=False))
    for modality, marker in markers.items():
        for label in [*common, None]:
            keep = [
                i
                for i, (m, lb) in enumerate(zip(modalities, labels, strict=True))
                if m == modality and (lb == label if label else lb not in colour)
            ]
            if keep:
                ax.scatter(
                    points[keep, 0],
                    points[keep, 1],
                    s=14,
                    marker=marker,
                    color=colour.get(label, "lightgrey"),
                    alpha=0.75,
                    label=f"{modality}: {label or 'other'}" if modality == "text" else None,
                )
    for index, image in (thumbnails or {}).items():
        _thumbnail(ax, image, points[index], zoom_px=22)
    ax.set_title(f"joint space ({method}); ○ text  △ image, colour = label")
    ax.legend(fontsize=6, loc="best", markerscale=1.5)
    return _save(figure, path)


def confusion_matrix(confusion: np.ndarray, labels: Sequence[str], path: Path):
    """Row-normalised confusion matrix (rows: true class, columns: predicted)."""
    totals = confusion.sum(axis=1, keepdims=True).clip(min=1)
    n = len(labels)
    size = min(4 + 0.35 * n, 16)
    figure, ax = _subplots(size, size)
    shown = ax.imshow(confusion / totals, cmap="Blues", vmin=0, vmax=1)
    font = 8 if n <= 20 else 5
    ax.set_xticks(range(n), labels, rotation=90, fontsize=font)
    ax.set_yticks(range(n), labels, fontsize=font)
    ax.set(xlabel="predicted", ylabel="true", title="zero-shot confusion (row-normalised)")
    figure.colorbar(shown, ax=ax, fraction=0.04)
    return _save(figure, path)


def training_curves(records: Sequence[Mapping], path: Path):
    """Training loss and temperature by step, and validation mean recall where evaluated."""
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval" in r]
    figure, axes = _subplots(10, 3.5, columns=2)
    axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    axes[0].set(xlabel="step", ylabel="loss", title="training loss")
    if evals:
        steps = [r["step"] for r in evals]
        axes[1].plot(steps, [100 * r["eval"]["primary"] for r in evals], marker="o")
    axes[1].set(xlabel="step", ylabel="mean recall (%)", title="validation")
    return _save(figure, path)


def _thumbnail(ax, image: Path, xy, zoom_px: int, box_alignment=(0.5, 0.5)) -> None:
    with Image.open(image) as opened:
        picture = opened.convert("RGB")
        picture.thumbnail((zoom_px * 2, zoom_px * 2))
    box = OffsetImage(np.asarray(picture), zoom=zoom_px / max(picture.size))
    ax.add_artist(AnnotationBbox(box, xy, frameon=False, box_alignment=box_alignment))
