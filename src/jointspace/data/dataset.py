"""A map-style dataset over manifest rows; towers' preprocess functions turn cells into inputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from jointspace.data.collate import ABSENT
from jointspace.data.manifest import FILE_COLUMNS, Manifest, ManifestError

Preprocess = Callable[[Any, np.random.Generator | None], Any]


class PairedDataset(Dataset):
    """Row i → ``{modality: preprocessed input, "_index": i, "_keys": {modality: raw cell}}``.

    An empty cell (the row lacks that modality) gives ``ABSENT`` as both input and key; the
    collate fills it in and marks it in ``Batch.present``.

    With ``augment_seed`` each row draws augmentation from a generator seeded by
    ``(augment_seed, epoch, i)``: identical whatever the worker count or resume point.
    """

    def __init__(
        self,
        manifest: Manifest,
        preprocess: Mapping[str, Preprocess],
        *,
        augment_seed: int | None = None,
    ):
        missing = [m for m in preprocess if m not in manifest.columns]
        if missing:
            raise ManifestError(f"{manifest.path}: no '{missing[0]}' column for that tower")
        self.manifest, self.preprocess = manifest, dict(preprocess)
        self.augment_seed, self.epoch = augment_seed, 0

    def __len__(self) -> int:
        return len(self.manifest)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.manifest.rows[index]
        rng = None
        if self.augment_seed is not None:
            rng = np.random.default_rng([self.augment_seed, self.epoch, index])
        sample: dict[str, Any] = {"_index": index, "_keys": {}}
        for modality, fn in self.preprocess.items():
            if not self.manifest.has(index, modality):
                sample[modality] = sample["_keys"][modality] = ABSENT
                continue
            sample[modality] = fn(self.raw(index, modality), rng)
            sample["_keys"][modality] = row[modality]
        return sample

    def raw(self, index: int, modality: str) -> Any:
        """What row ``index`` gives the tower: the text, or a file column's resolved path."""
        value = self.manifest.rows[index][modality]
        return self.manifest.resolve(value) if modality in FILE_COLUMNS else value

    def with_preprocess(self, preprocess: Mapping[str, Preprocess]) -> PairedDataset:
        """The same rows and augmentation seed with some modalities' preprocessing replaced."""
        merged = {**self.preprocess, **preprocess}
        return PairedDataset(self.manifest, merged, augment_seed=self.augment_seed)
