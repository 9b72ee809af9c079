"""Markdown tables and the one-line note on what retrieval numbers mean (files, docs, reports)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

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
    if metrics.get("skipped"):
        parts.append(f"not evaluated (no row has both): {metrics['skipped']}")
    return "; ".join(parts)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of already formatted cells (benchmarks and docs print these)."""
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)
