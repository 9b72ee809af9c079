"""Charts of a manifest's inspection (``jointspace data inspect --plots``) as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jointspace.atomic import atomic_path

PLOT_NAMES = ("caption_words.png", "image_sizes.png", "labels.png")


def save_plots(report: dict[str, Any], directory: Path) -> list[Path]:
    """Caption-length, image-size and label bar charts as PNG files; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    charts = []
    if "captions" in report:
        hist = report["captions"]["histogram"]
        centers = [(a + b) / 2 for a, b in zip(hist["edges"], hist["edges"][1:], strict=False)]
        charts.append((PLOT_NAMES[0], "caption length (words)", centers, hist["counts"]))
    if "images" in report:
        sizes = report["images"]["sizes"]
        charts.append((PLOT_NAMES[1], "image size (pixels)", list(sizes), list(sizes.values())))
    if "labels" in report:
        top = report["labels"]["top"]
        charts.append((PLOT_NAMES[2], f"top {len(top)} labels", list(top), list(top.values())))
    paths = []
    for name, title, xs, ys in charts:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.bar([str(x) if not isinstance(x, float) else f"{x:.1f}" for x in xs], ys)
        ax.set_title(title)
        ax.set_ylabel("count")
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        fig.tight_layout()
        with atomic_path(directory / name) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        paths.append(directory / name)
    return paths
