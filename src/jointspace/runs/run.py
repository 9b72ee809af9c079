"""A trained run as one object: its config, model, fingerprint, data, matcher and index."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from jointspace.config import ConfigError, ExperimentConfig, apply_overrides
from jointspace.data import Manifest, load_manifest
from jointspace.data.shard_set import ShardSet, is_shard_spec
from jointspace.data.source import ItemSource, ManifestSource, ShardSource
from jointspace.index import VectorIndex
from jointspace.index.build import build_index, indexed_media, open_for_model
from jointspace.matcher import MATCHER_DIR, CrossModalMatcher, SearchMatcher, load_matcher
from jointspace.models.feature_cache import FeatureCache
from jointspace.models.inference import Inference
from jointspace.models.io import load as load_model
from jointspace.models.io import model_fingerprint, resolve_model_dir
from jointspace.models.joint import JointModel

RUN_CONFIG = "config.yaml"


class Run:
    """A run directory (or a bare model directory), opened once and shared by every command.

    ``config`` is never None: the run's recorded ``config.yaml``, else the defaults
    (``recorded`` says which). The model, its fingerprint and its matcher load on first use.
    """

    def __init__(self, model_dir: Path, config: ExperimentConfig, config_path: Path | None):
        self.model_dir = model_dir
        self.config = config
        self.config_path = config_path
        # Where training wrote metrics.jsonl and checkpoints (for a bare model: its parent).
        self.dir = config_path.parent if config_path else model_dir.parent

    @classmethod
    def open(cls, path: str | Path, overrides: Sequence[str] = ()) -> Run:
        """The run in ``path``: a run directory (holding ``model/``) or a model directory.

        ``overrides`` (``--set train.feature_cache=null``) change its config for this use only.
        """
        model_dir = resolve_model_dir(path)
        for candidate in (model_dir / RUN_CONFIG, model_dir.parent / RUN_CONFIG):
            if candidate.is_file():
                config = apply_overrides(ExperimentConfig.from_yaml(candidate), overrides)
                return cls(model_dir, config, candidate)
        return cls(model_dir, apply_overrides(ExperimentConfig(), overrides), None)

    @property
    def recorded(self) -> bool:
        """Whether the config came from the run (``config.yaml``) rather than the defaults."""
        return self.config_path is not None

    @cached_property
    def model(self) -> JointModel:
        """The saved model, reading frozen towers' features from the cache its run used."""
        model = load_model(self.model_dir)
        model.feature_cache = FeatureCache.from_setting(self.config.train.feature_cache)
        model.inference = Inference.from_config(self.config.encode)
        return model

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the saved model's weights and config: indexes and matchers are tied to it."""
        return model_fingerprint(self.model_dir)

    @cached_property
    def matcher(self) -> CrossModalMatcher | None:
        """The matcher trained for this model (``MODEL_DIR/matcher``), or None."""
        directory = self.model_dir / MATCHER_DIR
        return load_matcher(directory, self.fingerprint) if directory.is_dir() else None

    def manifest_spec(self, data: str | Path | None = None) -> str:
        """``data`` if given, else the manifest the run was trained on."""
        if data:
            return str(data)
        if not self.recorded:
            raise ConfigError(
                f"{self.model_dir} records no manifest (no {RUN_CONFIG} beside its model): "
                "pass --data"
            )
        return self.config.data.manifest

    def manifest(
        self,
        data: str | Path | None = None,
        *,
        modalities: Sequence[str] | None = None,
        split: str | None = None,
        skip_bad: bool | None = None,
    ) -> Manifest:
        """Rows of ``data`` (default: the run's manifest) holding ``modalities`` (default: its)."""
        skip = self.config.data.skip_bad if skip_bad is None else skip_bad
        wanted = list(modalities) if modalities is not None else self.config.data.modalities
        return load_manifest(self.manifest_spec(data), wanted, split=split, skip_bad=skip)

    def source(
        self,
        data: str | Path | None,
        modality: str,
        *,
        split: str | None = None,
        skip_bad: bool | None = None,
    ) -> ItemSource:
        """``modality``'s distinct items of ``data`` (default: the run's), manifest or shards."""
        spec = self.manifest_spec(data)
        if is_shard_spec(spec):
            return ShardSource(ShardSet.open(spec), split)
        return ManifestSource(
            self.manifest(spec, modalities=[modality], split=split, skip_bad=skip_bad)
        )

    def open_index(self, uri: str) -> VectorIndex:
        """Open ``uri`` for reading, refusing an index that another model built."""
        return open_for_model(uri, self.fingerprint)

    def search_matcher(self, index: VectorIndex) -> SearchMatcher | None:
        """The matcher, ready to re-score ``index``'s hits; None when the run has none."""
        if self.matcher is None:
            return None
        target, root = indexed_media(index)
        return SearchMatcher(self.model, self.matcher, target, root)

    def build_index(
        self, data: Manifest | ItemSource, modality: str, uri: str, **options: Any
    ) -> VectorIndex:
        """Embed ``data``'s distinct ``modality`` items into ``uri`` (a rerun resumes)."""
        return build_index(self.model, self.fingerprint, data, modality, uri, **options)


def load(path: str | Path) -> JointModel:
    """A trained model, ready to encode: the same object every command and the service use."""
    return Run.open(path).model
