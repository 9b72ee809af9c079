"""Terminal tables (Rich): metrics, re-ranking, search results."""

from __future__ import annotations

from collections.abc import Mapping

from rich.table import Table

from jointspace.report.markdown import CHANCE, relevance_note

COUNTS = ("queries", "excluded_queries")


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


def results_table(query: str, hits: list) -> Table:
    table = Table(title=f"query: {query!r}")
    for name in ("rank", "score", "item", "label"):
        table.add_column(name, justify="right" if name in ("rank", "score") else "left")
    for hit in hits:
        table.add_row(str(hit.rank), f"{hit.score:.3f}", hit.value, hit.label)
    return table


def hits_table(query: str, ranked: list) -> Table:
    """Index search results: rank, score, the matcher's score (if re-ranked), id, metadata."""
    table = Table(title=f"query: {query!r}")
    for name in ("rank", "score", "match", "id", "metadata"):
        table.add_column(name)
    for rank, (hit, matched) in enumerate(ranked, start=1):
        meta = ", ".join(f"{key}={value}" for key, value in hit.metadata.items())
        shown = "" if matched is None else f"{matched:.2f}"
        table.add_row(str(rank), f"{hit.score:.3f}", shown, hit.id, meta)
    return table
