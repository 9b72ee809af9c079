"""Search results as an image grid: one row per query, its top-k images left to right."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from jointspace.atomic import atomic_path
from jointspace.data import Manifest, load_image

CELL, LABEL_WIDTH, CAPTION = 96, 190, 14


def save_grid(path: Path, queries: list[str], results: list, manifest: Manifest) -> Path:
    """Write a PNG: each row is a query followed by its hits, each captioned with its score."""
    k = max((len(hits) for hits in results), default=0)
    row_height = CELL + CAPTION
    grid = Image.new("RGB", (LABEL_WIDTH + k * CELL, row_height * len(queries)), "white")
    draw = ImageDraw.Draw(grid)
    for r, (query, hits) in enumerate(zip(queries, results, strict=True)):
        top = r * row_height
        draw.text((6, top + CELL // 2 - 6), query, fill="black")
        for c, hit in enumerate(hits):
            image = load_image(manifest.resolve(hit.value)).resize((CELL - 8, CELL - 8))
            left = LABEL_WIDTH + c * CELL
            grid.paste(image, (left + 4, top + 4))
            draw.text((left + 4, top + CELL - 2), f"{hit.score:.2f} {hit.split}", fill="gray")
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
    return path
