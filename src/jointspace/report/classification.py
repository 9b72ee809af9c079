"""A classifier's HTML page: accuracy, macro-F1, per-class table, confusion matrix, groups."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from jointspace.atomic import write_text_atomic
from jointspace.errors import InputError
from jointspace.report.html import STYLE, _table

# Past this many classes the matrix is too wide to read: list the worst pairs above it as well.
MANY_CLASSES = 30
TOP_PAIRS = 20
EXTRA_STYLE = """
.matrix { overflow: auto; max-width: 100%; max-height: 80vh; }
.matrix td, .matrix th { padding: 0.15rem 0.35rem; text-align: center; font-size: 0.8rem; }
.matrix th.true { text-align: left; white-space: nowrap; }
.matrix th.pred { writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap; }
"""


def write_classification_report(
    path: Path, metrics: Mapping[str, Any], classes: list[str], *, title: str
) -> Path:
    """Write the page to ``path`` (atomically) and return it.

    ``metrics`` is ``classification_metrics``' output for one split, or ``{split: that}`` for
    several (a mapping whose own keys hold no ``accuracy``); splits are shown in its order.
    """
    splits = _splits(metrics)
    sections = [f"<h1>{escape(title)}</h1>"]
    if len(splits) > 1:
        rows = [[name, m["accuracy"], m["macro_f1"], m["rows"]] for name, m in splits.items()]
        sections.append(_table(["split", "accuracy", "macro-F1", "rows"], rows))
    for name, split in splits.items():
        sections.append(_split_section(name, split, classes))
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}{EXTRA_STYLE}</style></head><body>{''.join(sections)}</body></html>\n"
    )
    path = Path(path)
    write_text_atomic(path, page)
    return path


def _splits(metrics: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    if "accuracy" in metrics:
        return {"": metrics}
    splits = {str(k): v for k, v in metrics.items() if isinstance(v, Mapping) and "accuracy" in v}
    if not splits:
        raise InputError(
            "classification report: metrics hold no accuracy, neither for one split nor per "
            f"split (keys: {sorted(map(str, metrics))})"
        )
    return splits


def _split_section(name: str, m: Mapping[str, Any], classes: list[str]) -> str:
    head = f"<h2>Split {escape(name)}</h2>" if name else ""
    summary = (
        f"<p class='note' data-split='{escape(name)}'>accuracy <b>{100 * m['accuracy']:.2f}%</b>"
        f", macro-F1 <b>{100 * m['macro_f1']:.2f}%</b>, {int(m['rows'])} rows, "
        f"{len(classes)} classes</p>"
    )
    per_class = m.get("per_class", {})
    rows = [
        [c, per_class[c]["precision"], per_class[c]["recall"], per_class[c]["f1"],
         int(per_class[c]["support"])]
        for c in classes
        if c in per_class
    ]  # fmt: skip
    parts = [head, summary, "<h3>Per class</h3>"]
    parts.append(_table(["class", "precision", "recall", "F1", "support"], rows))
    confusion = m.get("confusion")
    if confusion is not None:
        if len(confusion) != len(classes):
            raise InputError(
                f"classification report: a {len(confusion)}-row confusion matrix for "
                f"{len(classes)} classes"
            )
        parts.append("<h3>Confusion matrix</h3><p class='note'>rows: true class, columns: "
                     "predicted; shade: share of the row</p>")  # fmt: skip
        if len(classes) > MANY_CLASSES:
            parts.append(_confused_pairs(confusion, classes))
        parts.append(_matrix(confusion, classes))
    if m.get("per_group"):
        groups = [[g, v["accuracy"], int(v["rows"])] for g, v in m["per_group"].items()]
        parts.append("<h3>Per group</h3>" + _table(["group", "accuracy", "rows"], groups))
    return "".join(parts)


def _matrix(confusion: list[list[int]], classes: list[str]) -> str:
    head = "".join(f"<th class='pred'>{escape(c)}</th>" for c in classes)
    rows = []
    for i, (name, row) in enumerate(zip(classes, confusion, strict=True)):
        total = sum(row)
        cells = []
        for j, count in enumerate(row):
            share = count / total if total else 0.0
            # Correct cells in blue, errors in red, so a strong off-diagonal cell stands out.
            rgb = "37,99,235" if i == j else "220,38,38"
            tip = f"{name} → {classes[j]}: {count} ({100 * share:.1f}% of the row)"
            cells.append(
                f"<td data-true='{i}' data-pred='{j}' title='{escape(tip)}' "
                f"style='background: rgba({rgb},{share:.3f})'>{int(count)}</td>"
            )
        rows.append(f"<tr><th class='true'>{escape(name)}</th>{''.join(cells)}</tr>")
    return f"<div class='matrix'><table><tr><th></th>{head}</tr>{''.join(rows)}</table></div>"


def _confused_pairs(confusion: list[list[int]], classes: list[str]) -> str:
    pairs = [
        (count, i, j)
        for i, row in enumerate(confusion)
        for j, count in enumerate(row)
        if i != j and count > 0
    ]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    rows = [
        [classes[i], classes[j], int(count), count / max(sum(confusion[i]), 1)]
        for count, i, j in pairs[:TOP_PAIRS]
    ]
    title = f"<h3>Most confused pairs (top {min(TOP_PAIRS, len(pairs))})</h3>"
    return title + _table(["true", "predicted as", "count", "share of true"], rows)
