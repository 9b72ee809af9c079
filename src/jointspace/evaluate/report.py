"""Human-readable metric tables (Rich) for the CLI and the demo."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of already formatted cells (benchmarks and docs print these)."""
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if name == "median_rank" else f"{100 * value:.1f}"


def rerank_table(stages: dict[str, dict[str, float]], title: str = "re-ranking") -> Table:
    """Rows per direction and stage (e.g. ``bi_encoder`` then ``reranked``), one per metric."""
    merged = {
        f"{key.split('/')[0]} ({stage})/{key.split('/', 1)[1]}": value
        for stage, metrics in stages.items()
        for key, value in metrics.items()
        if "/" in key
    }
    return metrics_table(merged, title)
