"""``classify``: train and evaluate a fusion classifier into a run directory; ``Classifier``
opens one and answers single examples (CLI ``predict``, the service's ``POST /classify``)."""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from jointspace.atomic import atomic_dir, write_text_atomic
from jointspace.classifier.config import ClassifyConfig
from jointspace.classifier.data import LabelledSet, encode_raw, labelled_sets, reencode
from jointspace.classifier.fit import fit_classifier, predict_proba
from jointspace.classifier.io import ClassifierMeta, load_classifier, save_classifier
from jointspace.config import ConfigError
from jointspace.data import open_manifest, resolve_manifest
from jointspace.errors import ArtifactError, InputError, InputTypeError, NotFoundError
from jointspace.evaluate.classification import classification_metrics
from jointspace.models.build import build_model
from jointspace.models.fusion import FusionClassifier
from jointspace.models.io import load as load_model
from jointspace.models.io import model_fingerprint, save_model
from jointspace.models.joint import JointModel
from jointspace.runs.outputs import claim_dir, mark_dir
from jointspace.runs.run import Run

COMMAND = "classify"
CONFIG_FILE, TOWERS_DIR = "config.yaml", "towers"
METRICS_FILE, PREDICTIONS_FILE, REPORT_FILE = "metrics.json", "predictions.csv", "report.html"
PREDICTION_COLUMNS = ("id", "label", "predicted", "correct", "group")


def classify(
    config: ClassifyConfig,
    out_dir: str | Path,
    *,
    data: str | Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Train the head on ``data`` (default: ``config.data.manifest``), score val and test, and
    write the run directory atomically; returns ``{split: classification_metrics}``.

    ``out_dir`` must be new, empty, or (with ``force``) an earlier classifier's directory.
    With ``towers.train`` the towers' unlocked layers train with the head and are saved tuned.
    """
    out_dir = Path(out_dir)
    claim_dir(out_dir, COMMAND, force)  # refused before any work, nothing touched
    model = load_towers(config, data)
    sets = labelled_sets(config, model, data=data)
    tuned = model if config.towers.train else None
    fit = fit_classifier(sets["train"], config, val=sets.get("val"), towers=tuned)
    if tuned is not None:  # the held-out rows as the fine-tuned towers see them
        sets |= {
            k: reencode(s, tuned, config.towers.inputs, config.towers.batch_size)
            for k, s in sets.items()
            if k != "train"
        }
    metrics: dict[str, Any] = {}
    probabilities: dict[str, torch.Tensor] = {}
    for split in ("val", "test"):
        if split in sets:
            probabilities[split] = predict_proba(fit.model, sets[split])
            metrics[split] = split_metrics(sets[split], probabilities[split])
    recorded = copy.deepcopy(config)
    if data is not None:
        recorded.data.manifest = str(data)
    shown = "test" if "test" in sets else "val" if "val" in sets else None
    with atomic_dir(out_dir) as tmp:
        recorded.to_yaml(tmp / CONFIG_FILE)
        save_model(model, tmp / TOWERS_DIR)
        meta = ClassifierMeta(
            classes=list(sets["train"].classes),
            modalities=list(sets["train"].modalities),
            token_dims=sets["train"].dims,
            head=copy.deepcopy(config.head),
            inputs=config.towers.inputs,
            towers_fingerprint=model_fingerprint(tmp / TOWERS_DIR),
        )
        save_classifier(fit.model, meta, tmp)
        write_text_atomic(tmp / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
        if shown is not None:
            write_predictions(tmp / PREDICTIONS_FILE, sets[shown], probabilities[shown])
        if metrics:  # nothing held out (no val or test split): nothing to report
            _write_report(tmp / REPORT_FILE, metrics, meta.classes, recorded)
        mark_dir(tmp, COMMAND)
    return metrics


def split_metrics(data: LabelledSet, probabilities: torch.Tensor) -> dict[str, Any]:
    """``classification_metrics`` of the most probable class against ``data``'s labels."""
    predicted = probabilities.argmax(dim=-1).tolist()
    return classification_metrics(data.labels.tolist(), predicted, data.classes, data.groups)


def write_predictions(path: Path, data: LabelledSet, probabilities: torch.Tensor) -> None:
    """One CSV row per example: id, true label, predicted label, correct (0/1), group."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PREDICTION_COLUMNS)
    predicted = probabilities.argmax(dim=-1).tolist()
    for i, (truth, guess) in enumerate(zip(data.labels.tolist(), predicted, strict=True)):
        group = "" if data.groups is None else data.groups[i]
        label, chosen = data.classes[truth], data.classes[guess]
        writer.writerow([data.ids[i], label, chosen, int(truth == guess), group])
    write_text_atomic(path, buffer.getvalue())


def _write_report(path: Path, metrics: dict, classes: list[str], config: ClassifyConfig) -> None:
    from jointspace.report.classification import write_classification_report

    title = f"{config.head.name} fusion classifier on {config.data.manifest}"
    write_classification_report(path, metrics, classes, title=title)


def load_towers(config: ClassifyConfig, data: str | Path | None = None) -> JointModel:
    """The towers ``config.towers`` names: a run's model, or one built (seeded) from a config.

    A scratch text tower learns its tokenizer from the train split's texts.
    """
    towers = config.towers
    if towers.run is not None:
        model = Run.open(towers.run).model
    else:
        assert towers.model is not None  # ClassifyConfig.check: exactly one is given
        corpus = None
        if "text" in towers.model.towers:
            manifest = open_manifest(resolve_manifest(data or config.data.manifest))
            split = config.data.train_split
            corpus = [r["text"] for r in manifest.rows if r.get("split") == split and r.get("text")]
        torch.manual_seed(config.train.seed)
        model = build_model(towers.model, corpus=corpus or None)
    if missing := [m for m in config.data.modalities if m not in model.modalities]:
        raise ConfigError(
            f"data.modalities: the towers have no {missing[0]!r} tower "
            f"(they have {', '.join(model.modalities)})"
        )
    return model.eval()


@dataclass
class Prediction:
    """One answer: the best label, the top classes with softmax probabilities, modalities used."""

    label: str
    scores: list[tuple[str, float]]
    used: list[str]


class Classifier:
    """A saved classifier (``jointspace classify``'s run directory), ready to answer examples."""

    def __init__(
        self, path: Path, towers: JointModel, head: FusionClassifier, meta: ClassifierMeta
    ):
        self.path, self.towers, self.head, self.meta = path, towers, head, meta

    @classmethod
    def open(cls, path: str | Path) -> Classifier:
        """Load the towers and the head; missing or damaged files are one clear error."""
        path = Path(path)
        if not path.is_dir():
            raise NotFoundError(f"no classifier at {path} (not a directory)")
        head, meta = load_classifier(path)
        towers_dir = path / TOWERS_DIR
        try:
            towers = load_model(towers_dir)
        except NotFoundError:
            raise ArtifactError(f"{towers_dir}: missing (the classifier's towers)") from None
        if model_fingerprint(towers_dir) != meta.towers_fingerprint:
            raise ArtifactError(
                f"{towers_dir}: these are not the towers the classifier was trained on "
                "(fingerprint differs)"
            )
        if missing := [m for m in meta.modalities if m not in towers.modalities]:
            raise ArtifactError(f"{towers_dir}: no {missing[0]!r} tower")
        return cls(path, towers, head, meta)

    @property
    def modalities(self) -> list[str]:
        return list(self.meta.modalities)

    @property
    def classes(self) -> list[str]:
        return list(self.meta.classes)

    @property
    def fingerprint(self) -> str:
        return self.meta.fingerprint

    def probabilities(self, inputs: Mapping[str, Any]) -> tuple[torch.Tensor, list[str]]:
        """Softmax probabilities over ``classes`` for one example, and the modalities used."""
        given = self._checked(inputs)
        tokens = {
            m: encode_raw(self.towers, m, [raw], self.meta.inputs) for m, raw in given.items()
        }
        with torch.no_grad():
            logits, used = self.head.eval()(tokens)
        return logits[0].float().softmax(dim=-1), list(used)

    def predict(self, inputs: Mapping[str, Any], top_k: int = 5) -> Prediction:
        """Classify one example of raw inputs (text: str; image: path/bytes/PIL/array; audio:
        path/bytes/(samples, rate)) for any non-empty subset of ``modalities``."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InputError(f"top_k must be a positive whole number, got {top_k!r}")
        probs, used = self.probabilities(inputs)
        values, order = probs.topk(min(top_k, len(self.meta.classes)))
        scores = [
            (self.meta.classes[i], float(v))
            for v, i in zip(values.tolist(), order.tolist(), strict=True)
        ]
        return Prediction(scores[0][0], scores, used)

    def _checked(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        takes = ", ".join(self.modalities)
        given = {m: v for m, v in inputs.items() if v is not None}
        if unknown := sorted(set(given) - set(self.modalities)):
            raise InputError(f"this classifier takes {takes}; it has no {unknown[0]!r} input")
        if not given:
            raise InputError(f"nothing to classify: give at least one of {takes}")
        text = given.get("text")
        if text is not None:
            if not isinstance(text, str):
                raise InputTypeError(f"text must be a string, got {type(text).__name__}")
            if not text.strip():
                raise InputError("text is empty: give some text, or leave it out")
        return given
