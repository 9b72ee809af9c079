"""The report's HTML page: one self-contained file beside its PNG figures (no scripts)."""

from __future__ import annotations

import base64
import io
from html import escape
from typing import Any

from jointspace.data.image import load_image
from jointspace.data.manifest import Manifest
from jointspace.report.markdown import relevance_note

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
td, th { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
td:first-child, th:first-child, td.words { text-align: left; }
.note { color: #555; font-size: 0.85rem; } img.figure { max-width: 100%; }
.failure { display: flex; gap: 1rem; align-items: center; margin: 0.4rem 0; }
.failure figure { margin: 0; text-align: center; font-size: 0.75rem; }
.failure img { width: 64px; height: 64px; object-fit: contain; border: 1px solid #ddd; }
.failure .query { width: 260px; }
"""


def render_html(report: dict[str, Any], part: Manifest) -> str:
    """The whole page; images of failures are inlined so the file can be mailed around."""
    sections = [
        f"<h1>jointspace report</h1><p class='note'>split <b>{escape(report['split'])}</b>, "
        f"{report['rows']} rows, relevance=<b>{escape(report['relevance'])}</b></p>",
        _retrieval(report["retrieval"], report["figures"]),
        _zeroshot(report["zeroshot"]),
        _probe(report["probe"]),
        _geometry(report["geometry"]),
        _figure_section("Similarity of sampled pairs", report["figures"].get("similarity")),
        _figure_section("The joint space in 2-D", report["figures"].get("map")),
        _failures(report["failures"], part),
        _figure_section("Training", "training.png" if report["training"] else None),
    ]
    body = "\n".join(s for s in sections if s)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>jointspace report</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"<td>{value:.3f}</td>"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"<td>{value}</td>"
    return f"<td class='words'>{escape(str(value))}</td>"


def _retrieval(section: dict, figures: dict) -> str:
    metrics, chance = section["metrics"], section["chance"]
    rows, ks = [], []
    for direction, random in chance.items():
        ks, name = [k for k in random if k.startswith("R@")], direction.replace("_to_", " → ")
        model = [100 * metrics[f"{direction}/{k}"] for k in [*ks, "mAP"]]
        floor = [100 * random[k] for k in [*ks, "mAP"]]
        queries = metrics[f"{direction}/queries"]
        rows += [
            [name, *model, metrics[f"{direction}/median_rank"], queries],
            [f"chance {name}", *floor, random["median_rank"], ""],
        ]
    header = ["direction", *[f"{k} (%)" for k in ks], "mAP (%)", "median rank", "queries"]
    note = escape(relevance_note(metrics))
    return (
        f"<h2>Retrieval</h2><p class='note'>{note}</p>{_table(header, rows)}"
        f"<img class='figure' src='{figures['recall']}'>"
    )


def _zeroshot(section: dict | None) -> str:
    if section is None:
        return ""
    m = section["metrics"]
    rows = [[name, 100 * value] for name, value in m.items()]
    worst = [[label, 100 * acc] for label, acc in section["worst_classes"].items()]
    examples = ", ".join(f"{lb} → {nm}" for lb, nm in list(section["class_names"].items())[:3])
    excluded = section["excluded_items"]
    left_out = f"; {excluded} items with several labels left out" if excluded else ""
    return (
        f"<h2>Zero-shot classification</h2><p class='note'>{section['classes']} classes of split "
        f"<b>{escape(str(section['split']))}</b>; templates: "
        f"{escape(', '.join(section['templates']))}; class names: "
        f"<b>{escape(section['naming'])}</b> ({escape(examples)}){left_out}</p>"
        f"{_table(['metric', '%'], rows)}<h3>Hardest classes</h3>"
        f"{_table(['class', 'accuracy (%)'], worst)}<img class='figure' src='confusion.png'>"
    )


def _probe(section: dict) -> str:
    if "skipped" in section:
        why = escape(section["skipped"])
        return f"<h2>Linear probe</h2><p class='note'><b>Not run</b>: {why}</p>"
    sweep = [[c, 100 * acc] for c, acc in section["sweep"].items()]
    test = section["test_accuracy"]
    dropped = sum(section["dropped_unseen"].values())
    notes = [section["note"]] if "note" in section else []
    notes += [f"{dropped} items of classes absent from train left out"] if dropped else []
    shown = "".join(f"<p class='note'><b>Note</b>: {escape(n)}</p>" for n in notes)
    column = "val accuracy (%)" if section["selection"] == "val split" else "CV accuracy (%)"
    return (
        f"<h2>Linear probe</h2><p class='note'>logistic regression on frozen "
        f"{escape(section['modality'])} embeddings, {section['classes']} classes; C chosen by "
        f"{escape(section['selection'])}; best C={section['best_C']}, test accuracy "
        f"{100 * test:.1f}%</p>{shown}{_table(['C', column], sweep)}"
    )


def _geometry(section: dict) -> str:
    rows = [[k, v, section["notes"].get(k, "")] for k, v in section["values"].items()]
    return f"<h2>Geometry of the joint space</h2>{_table(['measure', 'value', 'meaning'], rows)}"


def _figure_section(title: str, figure: str | None) -> str:
    return f"<h2>{escape(title)}</h2><img class='figure' src='{figure}'>" if figure else ""


def _failures(section: dict, part: Manifest) -> str:
    items, is_image = [], section["gallery"] == "image"
    for f in section["queries"]:
        expected = "".join(_thumb(part, v, "expected", is_image) for v in f["expected"])
        got = "".join(
            _thumb(part, r["value"], f"{r['score']:.2f}", is_image) for r in f["retrieved"]
        )
        items.append(
            f"<div class='failure'><div class='query'><b>{escape(f['query'])}</b><br>"
            f"first correct at rank {f['rank']}</div>{expected}<span>→ retrieved</span>{got}</div>"
        )
    title = f"Top failures ({section['direction'].replace('_to_', ' → ')})"
    count = (
        f"{section['failed']} of {section['scored']} queries have no relevant item at rank 1"
        + (f"; the {len(items)} worst:" if items else ".")
    )
    return f"<h2>{escape(title)}</h2><p class='note'>{escape(count)}</p>" + "".join(items)


def _thumb(part: Manifest, value: str, caption: str, is_image: bool) -> str:
    shown = f"<div>{escape(value[:80])}</div>"
    if is_image:
        image = load_image(part.resolve(value))
        image.thumbnail((96, 96))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = base64.b64encode(buffer.getvalue()).decode()
        shown = f"<img src='data:image/png;base64,{data}' alt='{escape(value)}'>"
    return f"<figure>{shown}<figcaption>{escape(caption)}</figcaption></figure>"
