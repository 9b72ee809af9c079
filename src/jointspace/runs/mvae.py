"""``mvae``: train a multimodal VAE from a config into a run directory; ``MvaeRun`` opens one
and generates any of its modalities from any other (CLI ``generate``)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from jointspace.atomic import atomic_dir, write_text_atomic
from jointspace.config import ConfigError
from jointspace.errors import ArtifactError, InputError, NotFoundError
from jointspace.generative.config import MvaeConfig
from jointspace.generative.fit import evaluate_elbo, fit_mvae
from jointspace.generative.forms import InputForms, Vocabulary
from jointspace.generative.io import load_mvae, save_mvae
from jointspace.generative.rows import build_vocabulary, load_rows, open_rows
from jointspace.models.elbo import mean_of
from jointspace.models.mvae import MultimodalVAE
from jointspace.runs.outputs import claim_dir, mark_dir

COMMAND = "mvae"
CONFIG_FILE, VOCAB_FILE, METRICS_FILE = "config.yaml", "vocab.json", "metrics.json"


@dataclass
class MvaeTraining:
    """What ``train_mvae`` wrote: the metrics (``metrics.json``) and the trained model."""

    metrics: dict[str, Any]
    model: MultimodalVAE


def train_mvae(
    config: MvaeConfig, out_dir: str | Path, *, data: str | Path | None = None, force: bool = False
) -> MvaeTraining:
    """Train on ``data`` (default ``config.data.manifest``), score the val and test ELBO, and
    write the run directory atomically: config.yaml, the model, vocab.json, metrics.json.

    ``out_dir`` must be new, empty, or (with ``force``) an earlier ``jointspace mvae`` output.
    """
    out_dir = Path(out_dir)
    claim_dir(out_dir, COMMAND, force)  # refused before any work, nothing touched
    manifest, splits = open_rows(config, data)
    vocab = build_vocabulary(config, splits["train"])
    forms = InputForms(config.modalities, vocab)
    show = config.train.progress
    sets = {
        name: load_rows(manifest, rows, forms, desc=f"mvae {name} rows", progress=show)
        for name, rows in splits.items()
    }
    fit = fit_mvae(config, sets["train"], forms, val=sets.get("val"))
    metrics: dict[str, Any] = {
        "rows": {name: len(s) for name, s in sets.items()},
        "vocabulary": len(vocab) if vocab is not None else None,
        "best_epoch": fit.best_epoch,
        "history": fit.history,
    }
    for name in ("val", "test"):
        if name in sets:
            metrics[name] = evaluate_elbo(fit.model, sets[name], beta=config.train.beta)
    recorded = copy.deepcopy(config)
    if data is not None:
        recorded.data.manifest = str(data)
    with atomic_dir(out_dir) as tmp:
        recorded.to_yaml(tmp / CONFIG_FILE)
        metrics["fingerprint"] = save_mvae(fit.model, config.model.hidden, tmp)
        if vocab is not None:
            vocab.save(tmp / VOCAB_FILE)
        write_text_atomic(tmp / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
        mark_dir(tmp, COMMAND)
    return MvaeTraining(metrics, fit.model)


class MvaeRun:
    """A saved MVAE (``jointspace mvae``'s run directory): its model, input forms and config."""

    def __init__(self, path: Path, model: MultimodalVAE, forms: InputForms, fingerprint: str):
        self.path, self.model, self.forms, self.fingerprint = path, model, forms, fingerprint

    @classmethod
    def open(cls, path: str | Path) -> MvaeRun:
        path = Path(path)
        if not path.is_dir():
            raise NotFoundError(f"no MVAE run at {path} (not a directory)")
        model, fingerprint = load_mvae(path)
        config_path = path / CONFIG_FILE
        if not config_path.is_file():
            raise ArtifactError(f"{config_path}: missing (the run's config)")
        try:
            config = MvaeConfig.from_yaml(config_path)
        except ConfigError as err:
            raise ArtifactError(f"damaged run config: {err}") from None
        if sorted(config.modalities) != model.modalities:
            raise ArtifactError(
                f"{config_path}: damaged: its modalities {sorted(config.modalities)} are not the "
                f"model's {model.modalities}"
            )
        vocab = Vocabulary.load(path / VOCAB_FILE) if "text" in config.modalities else None
        forms = InputForms(config.modalities, vocab)
        for m in model.modalities:
            if forms.shape(m) != model.specs[m].shape:
                raise ArtifactError(
                    f"{path}: damaged: {m} inputs have shape {forms.shape(m)} but the model reads "
                    f"{model.specs[m].shape}"
                )
        return cls(path, model, forms, fingerprint)

    @property
    def modalities(self) -> list[str]:
        return list(self.model.modalities)

    @property
    def vocabulary(self) -> list[str]:
        return [] if self.forms.vocab is None else list(self.forms.vocab.words)

    def row(self, modality: str, raw: Any) -> torch.Tensor:
        """One raw input (text, image path or bytes, audio path) as the model's ``[1, …]`` row."""
        self._known(modality)
        if raw is None or (isinstance(raw, str) and modality == "text" and not raw.strip()):
            raise InputError(f"nothing to generate from: give the {modality} input")
        return self.forms(modality, raw).unsqueeze(0)

    def generate(
        self,
        inputs: dict[str, Any],
        to: str,
        *,
        samples: int | None = None,
        seed: int = 0,
    ) -> torch.Tensor:
        """``to``'s expected value ``[n, *shape]`` given raw ``inputs`` {modality: raw}: decoded
        from the posterior mean (n = 1), or from ``samples`` draws of the posterior (seeded)."""
        self._known(to)
        if not inputs:
            raise InputError(f"nothing to generate from: give any of {', '.join(self.modalities)}")
        rows = {m: self.row(m, raw) for m, raw in inputs.items()}
        return self.generate_rows(rows, to, samples=samples, seed=seed)

    @torch.no_grad()
    def generate_rows(
        self, rows: dict[str, torch.Tensor], to: str, *, samples: int | None = None, seed: int = 0
    ) -> torch.Tensor:
        """As ``generate``, from rows already in input form (``[1, …]`` each)."""
        if samples is not None and samples < 1:
            raise InputError(f"samples must be at least 1, got {samples}")
        mu, logvar = self.model.encode(rows)
        if samples is None:
            z = mu
        else:
            noise = torch.randn(
                samples, mu.shape[-1], generator=torch.Generator().manual_seed(seed)
            )
            z = mu + noise * (0.5 * logvar).exp()
        params = self.model.decode(z, [to])[to]
        return mean_of(self.model.specs[to].likelihood, params)

    def top_words(self, distribution: torch.Tensor, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` most probable words of one generated word distribution ``[vocab]``."""
        values, order = distribution.flatten().topk(min(k, len(self.vocabulary)))
        return [(self.vocabulary[i], float(v)) for v, i in zip(values.tolist(), order.tolist(),
                                                                 strict=True)]  # fmt: skip

    def _known(self, modality: str) -> None:
        if modality not in self.modalities:
            raise InputError(
                f"this MVAE has no {modality!r} modality; it has {', '.join(self.modalities)}"
            )
