"""Human-readable metric tables (Rich) for the CLI and the demo."""

from __future__ import annotations

from rich.table import Table


def metrics_table(metrics: dict[str, float], title: str = "retrieval") -> Table:
    """One row per direction (``a_to_b``), one column per metric."""
    directions = sorted({k.split("/")[0] for k in metrics if "/" in k})
    names = list(dict.fromkeys(k.split("/", 1)[1] for k in metrics if "/" in k))
    table = Table(title=title)
    table.add_column("direction")
    for name in names:
        table.add_column(name, justify="right")
    for direction in directions:
        cells = [_fmt(name, metrics.get(f"{direction}/{name}")) for name in names]
        table.add_row(direction.replace("_to_", " → "), *cells)
    return table


def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if name == "median_rank" else f"{100 * value:.1f}"
