"""Generated images (and log-mel frames) as PNG grids, each cell scaled up without smoothing."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

LABEL_WIDTH, GAP = 120, 2


def to_gray(rows: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]`` values in [0, 1]: images as they are, other arrays (log-mel) min–max scaled."""
    flat = rows.detach().float().reshape(rows.shape[0], *rows.shape[-2:])
    if bool(((flat >= 0) & (flat <= 1)).all()):
        return flat
    low = flat.amin(dim=(1, 2), keepdim=True)
    high = flat.amax(dim=(1, 2), keepdim=True)
    return (flat - low) / (high - low).clamp_min(1e-8)


def grid_png(
    rows: Sequence[torch.Tensor], labels: Sequence[str] | None = None, *, cell: int = 48
) -> bytes:
    """A PNG with one grid row per tensor ``[N, (1,) H, W]``, an optional label left of each."""
    columns = max(r.shape[0] for r in rows)
    left = LABEL_WIDTH if labels else 0
    size = (left + columns * (cell + GAP) - GAP, len(rows) * (cell + GAP) - GAP)
    grid = Image.new("L", size, 255)  # white gaps between cells, none around the edge
    draw = ImageDraw.Draw(grid)
    for r, images in enumerate(rows):
        top = r * (cell + GAP)
        if labels:
            draw.text((4, top + cell // 2 - 6), labels[r], fill=0)
        for c, gray in enumerate(to_gray(images)):
            pixels = np.rint(gray.clamp(0, 1).numpy() * 255).astype(np.uint8)
            tile = Image.fromarray(pixels, mode="L").resize((cell, cell), Image.Resampling.NEAREST)
            grid.paste(tile, (left + c * (cell + GAP), top))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()
