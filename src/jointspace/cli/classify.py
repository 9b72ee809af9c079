"""``jointspace classify`` (train and score a fusion classifier) and ``predict`` (one example)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from jointspace.cli.errors import user_errors
from jointspace.cli.options import ConfigData, Force, Sets, SkipBad

out = Console()
err = Console(stderr=True)
SPLITS = ("val", "test")


@user_errors
def classify(
    config: Annotated[
        Path,
        typer.Argument(help="Classifier YAML (see docs/fusion.md), e.g. configs/digits-vqa.yaml."),
    ],
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Run directory: new or empty; an earlier classifier there is replaced only with "
            "--force.",
        ),
    ],
    data: ConfigData = None,
    skip_bad: SkipBad = False,
    force: Force = False,
    sets: Sets = None,
) -> None:
    """Train a fusion classifier on labelled rows and report val/test accuracy and macro-F1.

    Writes OUT: config.yaml, towers/, classifier.safetensors + classifier.json, metrics.json,
    predictions.csv (test split) and report.html, atomically once training is done.
    """
    from jointspace.classifier.config import ClassifyConfig
    from jointspace.config import apply_overrides
    from jointspace.runs.classify import classify as run_classify

    overrides = [*(sets or ()), *(["data.skip_bad=true"] if skip_bad else [])]
    cfg = apply_overrides(ClassifyConfig.from_yaml(config), overrides)
    metrics = run_classify(cfg, out_dir, data=data, force=force)
    out.print(scores_table(metrics))
    if groups := group_table(metrics):
        out.print(groups)
    err.print(f"classifier → {out_dir}", highlight=False, soft_wrap=True)


@user_errors
def predict(
    run: Annotated[Path, typer.Argument(help="A classifier directory (`jointspace classify`).")],
    text: Annotated[str | None, typer.Option(help="The text input.")] = None,
    image: Annotated[Path | None, typer.Option(help="An image file.")] = None,
    audio: Annotated[Path | None, typer.Option(help="An audio file.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="How many classes to list.", min=1)] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Classify one example from any of the classifier's modalities (the rest count as missing)."""
    from jointspace.runs.classify import Classifier

    classifier = Classifier.open(run)
    given = {"text": text, "image": image, "audio": audio}
    answer = classifier.predict({m: v for m, v in given.items() if v is not None}, top_k=top_k)
    if as_json:
        payload = {
            "label": answer.label,
            "scores": [{"label": c, "score": s} for c, s in answer.scores],
            "used": answer.used,
            "fingerprint": classifier.fingerprint,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=f"answer: {answer.label}", caption=f"used: {', '.join(answer.used)}")
    table.add_column("rank", justify="right")
    table.add_column("label")
    table.add_column("probability", justify="right")
    for rank, (label, score) in enumerate(answer.scores, start=1):
        table.add_row(str(rank), label, f"{score:.4f}")
    out.print(table)


def scores_table(metrics: Mapping[str, Any]) -> Table:
    """Accuracy, macro-F1 and rows per split, in percent."""
    splits = [s for s in SPLITS if s in metrics]
    table = Table(title="classifier")
    table.add_column("metric")
    for split in splits:
        table.add_column(split, justify="right")
    for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
        table.add_row(name, *(f"{100 * metrics[s][key]:.1f}" for s in splits))
    table.add_row("rows", *(str(metrics[s]["rows"]) for s in splits), style="dim")
    return table


def group_table(metrics: Mapping[str, Any]) -> Table | None:
    """Accuracy (%) and rows of each group per split; None when no group column was given."""
    splits = [s for s in SPLITS if "per_group" in metrics.get(s, {})]
    if not splits:
        return None
    names = sorted({g for s in splits for g in metrics[s]["per_group"]})
    table = Table(title="accuracy per group")
    table.add_column("group")
    for split in splits:
        table.add_column(split, justify="right")
        table.add_column("rows", justify="right", style="dim")
    for name in names:
        cells = []
        for split in splits:
            found = metrics[split]["per_group"].get(name)
            cells += (
                ["-", "0"]
                if found is None
                else [f"{100 * found['accuracy']:.1f}", str(found["rows"])]
            )
        table.add_row(name, *cells)
    return table
