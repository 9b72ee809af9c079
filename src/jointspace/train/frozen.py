"""Frozen towers train from cached features: their inputs become pooled-feature lookups."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from jointspace.data.dataset import PairedDataset
from jointspace.models.feature_cache import FeatureCache
from jointspace.models.joint import JointModel
from jointspace.train.loader import TrainData

log = logging.getLogger("jointspace")


class FeatureLookup:
    """A dataset preprocess step that returns an input's precomputed features."""

    def __init__(self, raws: list[Any], features: torch.Tensor):
        self.row_of = {raw: i for i, raw in enumerate(raws)}
        self.features = features

    def __call__(self, raw: Any, rng: np.random.Generator | None = None) -> torch.Tensor:
        return self.features[self.row_of[raw]]


def use_cached_features(
    model: JointModel, dataset: TrainData, cache: FeatureCache | None
) -> tuple[TrainData, frozenset[str]]:
    """The dataset with frozen towers' inputs replaced by their features, and those modalities.

    Augmentation no longer applies to those modalities: each input has one feature vector.
    Streamed shards are never held whole, so their frozen towers run on every batch.
    """
    frozen = [m for m in dataset.preprocess if model.tower(m).frozen]
    if cache is None or not frozen:
        return dataset, frozenset()
    if not isinstance(dataset, PairedDataset):
        log.info("frozen %s: streaming shards, features computed per batch", ", ".join(frozen))
        return dataset, frozenset()
    lookups = {}
    for modality in frozen:
        rows = (i for i in range(len(dataset)) if dataset.manifest.has(i, modality))  # absent: none
        raws = list(dict.fromkeys(dataset.raw(i, modality) for i in rows))
        lookups[modality] = FeatureLookup(raws, cache.features(model.tower(modality), raws))
    log.info(
        "frozen %s: training from cached features (%d computed, %d from %s)",
        ", ".join(frozen),
        cache.misses,
        cache.hits,
        cache.root,
    )
    return dataset.with_preprocess(lookups), frozenset(frozen)
