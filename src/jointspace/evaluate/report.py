"""Human-readable metric tables (Rich) for the CLI and the demo."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from rich.table import Table

COUNTS = ("queries", "excluded_queries")
CHANCE = "chance_"


def relevance_note(metrics: Mapping[str, object]) -> str:
    """One line saying which relevance the numbers use, what chance means and what was left out."""
    from jointspace.evaluate.retrieval import RELEVANCE_MEANING

    parts = []
    relevance = metrics.get("relevance")
    if relevance is not None:
        parts.append(f"relevance={relevance} ({RELEVANCE_MEANING.get(str(relevance), '?')})")
    if any(f"/{CHANCE}" in k for k in metrics):
        parts.append("chance = exact expected value under a uniformly random ranking")
    for key, value in metrics.items():
        if key.endswith("/excluded_queries") and value:
            direction = key.split("/")[0].replace("_to_", " → ")
            parts.append(f"{direction}: {int(value)} queries with no relevant item excluded")
    return "; ".join(parts)


def metrics_table(metrics: Mapping[str, object], title: str = "retrieval") -> Table:
    """One row per direction (``a_to_b``) and one for its chance level, one column per metric;
    the caption names the relevance."""
    keyed = [k for k in metrics if "/" in k]
    directions = sorted({k.split("/")[0] for k in keyed})
    names = [
        n
        for n in dict.fromkeys(k.split("/", 1)[1] for k in keyed)
        if not n.startswith(CHANCE) and n not in COUNTS
    ]
    counted = any(k.endswith("/queries") for k in keyed)
    table = Table(title=title, caption=relevance_note(metrics) or None)
    table.add_column("direction")
    for name in names:
        table.add_column(name, justify="right")
    if counted:
        table.add_column("queries", justify="right")
    for direction in directions:
        cells = [_fmt(name, metrics.get(f"{direction}/{name}")) for name in names]
        queries = metrics.get(f"{direction}/queries")
        table.add_row(
            direction.replace("_to_", " → "), *cells, *([f"{queries}"] if counted else [])
        )
        chance = [metrics.get(f"{direction}/{CHANCE}{name}") for name in names]
        if any(value is not None for value in chance):
            cells = [_fmt(name, value) for name, value in zip(names, chance, strict=True)]
            table.add_row("  chance", *cells, *([""] if counted else []), style="dim")
    return table


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of already formatted cells (benchmarks and docs print these)."""
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def _fmt(name: str, value: object) -> str:
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
