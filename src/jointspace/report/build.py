"""``jointspace report``: every evaluation of a model on a manifest, as JSON, PNGs and HTML."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.atomic import atomic_dir
from jointspace.config import dumps_json
from jointspace.data.complete import rows_having
from jointspace.data.manifest import Manifest
from jointspace.errors import InputError
from jointspace.evaluate import geometry
from jointspace.evaluate.chance import pooled_survival
from jointspace.evaluate.metrics import ranking_stats, scored_queries
from jointspace.evaluate.probe import linear_probe, linear_probe_cv
from jointspace.evaluate.retrieval import Retrieval, embed_pairs, score_pairs
from jointspace.evaluate.zeroshot import (
    TEMPLATES,
    absent_rows,
    evaluate_zero_shot,
    labelled_items,
)
from jointspace.models.embedding import embed_items
from jointspace.models.joint import JointModel
from jointspace.report import plots
from jointspace.report.html import render_html
from jointspace.train.logs import read_log

MAX_K, MAP_POINTS, HEATMAP_PAIRS, FAILURES, THUMBNAILS = 50, 300, 10, 8, 24


def build_report(
    model: JointModel,
    manifest: Manifest,
    out_dir: str | Path,
    *,
    split: str | None = "test",
    zeroshot_split: str | None = "zeroshot",
    modalities: Sequence[str] = ("text", "image"),
    relevance: str = "pairs",
    templates: Sequence[str] = TEMPLATES,
    class_names: str | Path | dict[str, str] = "leaf",
    run_dir: str | Path | None = None,
    map_method: str = "pca",
    seed: int = 0,
) -> dict[str, Any]:
    """Write ``index.html``, ``report.json`` and figures into ``out_dir`` (atomically).

    Retrieval covers every direction between ``modalities`` (each over the rows having both);
    geometry, figures and failures the first pair having rows, over its rows.
    ``class_names``: how zero-shot turns labels into class names (see ``evaluate_zero_shot``)."""
    part = manifest.split(split) if split else manifest
    rng = np.random.default_rng(seed)
    retrievals, skipped = embed_pairs(model, part, tuple(modalities), relevance)
    data = retrievals[0]
    pair = data.modalities
    report: dict[str, Any] = {"split": split or "all", "rows": len(part), "relevance": relevance}
    with atomic_dir(out_dir) as tmp:
        report["retrieval"] = _retrieval_section(retrievals, relevance, tmp, skipped)
        report["geometry"] = _geometry_section(model, part, pair, rng)
        report["zeroshot"] = _zeroshot_section(
            model, manifest, (part, report["split"]), zeroshot_split, (templates, class_names), tmp
        )
        report["probe"] = _probe_section(model, manifest, pair[1])
        report["figures"] = _figures(model, part, pair, rng, tmp, map_method)
        report["failures"] = _failures(data)
        report["training"] = _training_section(run_dir, tmp)
        (tmp / "report.json").write_text(dumps_json(report))
        (tmp / "index.html").write_text(render_html(report, part))
    return report


def recall_curve(first_ranks: np.ndarray, max_k: int) -> np.ndarray:
    """Recall@K for K = 1..max_k from the rank of each query's first relevant item."""
    return (first_ranks[:, None] <= np.arange(1, max_k + 1)[None, :]).mean(axis=0)


def _retrieval_section(
    retrievals: list[Retrieval], relevance: str, out: Path, skipped=()
) -> dict[str, Any]:
    max_k = min(MAX_K, *(n for data in retrievals for n in data.relevant.shape))
    curves, chance = {}, {}
    for data in retrievals:
        a, b = data.modalities
        scores, relevant = data.scores, data.relevant
        for name, s, r in (
            (f"{a}_to_{b}", scores, relevant),
            (f"{b}_to_{a}", scores.T, relevant.T),
        ):
            has = scored_queries(r)
            curves[name] = recall_curve(ranking_stats(s[has], r[has])[0], max_k)
            # exact expected Recall@K of a random ranking for K = 1..max_k
            chance[name] = 1.0 - pooled_survival(r.shape[1], r[has].sum(axis=1), max_k + 1)[1:]
    plots.recall_curves(curves, chance, out / "recall_at_k.png")
    ks = [k for k in (1, 5, 10) if k <= max_k]
    metrics = score_pairs(retrievals, ks, relevance, skipped)
    random = {
        n: {key: metrics[f"{n}/chance_{key}"] for key in [*(f"R@{k}" for k in ks), "mAP"]}
        | {"median_rank": metrics[f"{n}/chance_median_rank"]}
        for n in chance
    }
    return {"relevance": relevance, "metrics": metrics, "chance": random}


def _geometry_section(model, part: Manifest, modalities, rng) -> dict[str, Any]:
    # Pairs need both sides: rows lacking one (an empty cell) are left out, and counted.
    part, left_out = rows_having(part, modalities[:2])
    rows = _sample(part.rows, 1000, rng)
    pairs = tuple(embed_items(model, part, m, [row[m] for row in rows])[1] for m in modalities[:2])
    values = geometry.diagnose(dict(zip(modalities, pairs, strict=False)), pairs=pairs)
    return {"values": values, "notes": geometry.interpret(values), "rows_left_out": left_out}


def _zeroshot_section(model, manifest, fallback, zeroshot_split, naming, out) -> dict | None:
    if "label" not in manifest.columns or "image" not in manifest.columns:
        return None
    templates, class_names = naming
    # Held-out classes when the manifest has them, else the report's own split.
    use_held_out = zeroshot_split is not None and zeroshot_split in manifest.splits()
    target, name = (manifest.split(zeroshot_split), zeroshot_split) if use_held_out else fallback
    result = evaluate_zero_shot(model, target, templates=templates, names=class_names)
    plots.confusion_matrix(result.confusion, result.labels, out / "confusion.png")
    worst = sorted(result.per_class.items(), key=lambda item: item[1])[:10]
    return {
        "split": name,
        "classes": len(result.labels),
        "templates": list(templates),
        "naming": result.naming,
        "class_names": result.class_names,
        "excluded_items": result.excluded_items,
        "absent_rows": result.absent_rows,
        "metrics": result.metrics,
        "worst_classes": dict(worst),
    }


def _probe_section(model, manifest: Manifest, modality: str) -> dict:
    """The probe, or ``{"skipped": why}``: with no val split C is cross-validated on train."""
    if "label" not in manifest.columns:
        return {"skipped": "no 'label' column, so nothing to probe"}
    present = set(manifest.splits())
    missing = [s for s in ("train", "test") if s not in present]
    if missing:
        names = " and ".join(f"'{s}'" for s in missing)
        return {"skipped": f"no {names} split in the manifest, so no linear probe"}
    names = ["train", "val", "test"] if "val" in present else ["train", "test"]
    splits, dropped, absent = {}, {}, {}
    for name in names:
        items, targets, labels = labelled_items(manifest.split(name), modality)
        absent[name] = absent_rows(manifest.split(name), modality)  # skipped: no such input
        embedded = embed_items(model, manifest, modality, items)[1]
        splits[name] = (embedded, np.array(labels)[targets])
    known = set(splits["train"][1])
    for name in names[1:]:  # classes only seen at test time cannot be probed: drop, count
        x, y = splits[name]
        keep = np.isin(y, list(known))
        splits[name], dropped[name] = (x[keep], y[keep]), int((~keep).sum())
    if "val" in splits:
        result = linear_probe(*splits["train"], *splits["val"], *splits["test"])
    else:
        result = linear_probe_cv(*splits["train"], *splits["test"])
        result["note"] = f"no 'val' split: C chosen by {result['selection']}"
    return result | {
        "modality": modality,
        "classes": len(known),
        "dropped_unseen": dropped,
        "absent_rows": absent,
    }


def _figures(model, part, modalities, rng, out, map_method: str) -> dict[str, str]:
    figures = {"recall": "recall_at_k.png"}
    part = rows_having(part, modalities[:2])[0]  # the heatmap and map show pairs
    if modalities[1] == "image":
        _heatmap(model, part, modalities, rng, out / "similarity.png")
        _map(model, part, modalities, rng, out / "map.png", map_method)
        figures |= {"similarity": "similarity.png", "map": "map.png"}
    return figures


def _heatmap(model, part: Manifest, modalities, rng, path: Path) -> None:
    a, b = modalities
    rows = _sample(list({row[b]: row for row in part.rows}.values()), HEATMAP_PAIRS, rng)
    texts, images = [r[a] for r in rows], [r[b] for r in rows]
    scores = embed_items(model, part, a, texts)[1] @ embed_items(model, part, b, images)[1].T
    plots.similarity_heatmap(scores, texts, [part.resolve(v) for v in images], path)


def _map(model, part: Manifest, modalities, rng, path: Path, method: str) -> None:
    a, b = modalities
    rows = _sample(part.rows, MAP_POINTS, rng)
    points = np.concatenate([embed_items(model, part, m, [r[m] for r in rows])[1] for m in (a, b)])
    flat = project_2d(points, method)
    labels = [r.get("label", "") for r in rows] * 2
    kinds = [a] * len(rows) + [b] * len(rows)
    shown = range(min(THUMBNAILS, len(rows)))
    thumbs = {len(rows) + i: part.resolve(rows[i][b]) for i in shown}
    plots.embedding_map(flat, kinds, labels, path, thumbs, method=method.upper())


def project_2d(points: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D coordinates by PCA (exact, via SVD) or t-SNE (scikit-learn, seeded)."""
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(points) - 1) / 3)
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)
    if method != "pca":
        raise InputError(f"map method must be 'pca' or 'tsne', got {method!r}")
    centred = points - points.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def failures(
    scores: np.ndarray, relevant: np.ndarray, limit: int = FAILURES
) -> tuple[np.ndarray, int]:
    """The ``limit`` worst queries whose first relevant item is not at rank 1, worst first (ties:
    query order), and how many such queries there are; queries with no relevant item are not
    scored, so they are no failures."""
    has = np.flatnonzero(scored_queries(relevant))
    first_ranks, _ = ranking_stats(scores[has], relevant[has])
    failed = np.flatnonzero(first_ranks > 1)
    worst = failed[np.argsort(-first_ranks[failed], kind="stable")]
    return has[worst[:limit]], len(failed)


def _failures(data: Retrieval) -> dict[str, Any]:
    """Queries whose first correct item ranked worst, with what was retrieved instead."""
    scores, relevant = data.scores, data.relevant
    worst, failed = failures(scores, relevant)
    queries, gallery = data.values
    worst_queries = []
    for q in worst:
        # the ranking's own order: ties put irrelevant items first, as the metrics do
        order = np.lexsort((relevant[q], -scores[q]))
        rank = int(np.argmax(relevant[q][order])) + 1
        worst_queries.append(
            {
                "query": queries[q],
                "rank": rank,
                "expected": [gallery[j] for j in np.flatnonzero(relevant[q])[:2]],
                "retrieved": [
                    {"value": gallery[j], "score": float(scores[q, j])} for j in order[:3]
                ],
            }
        )
    a, b = data.modalities
    return {
        "direction": f"{a}_to_{b}",
        "gallery": b,
        "failed": failed,
        "scored": int(scored_queries(relevant).sum()),
        "queries": worst_queries,
    }


def _training_section(run_dir, out: Path) -> dict | None:
    log = Path(run_dir) / "metrics.jsonl" if run_dir is not None else None
    if log is None or not log.is_file():
        return None
    records = read_log(log)
    plots.training_curves(records, out / "training.png")
    losses = [r["loss"] for r in records if "loss" in r]
    return {"steps": records[-1]["step"], "final_loss": losses[-1] if losses else None}


def _sample(items: list, n: int, rng: np.random.Generator) -> list:
    if len(items) <= n:
        return list(items)
    return [items[i] for i in sorted(rng.choice(len(items), n, replace=False))]
