"""Data: manifests, validation, images, datasets, batches and built-in datasets."""

from jointspace.data.audio import AudioError, AudioTransform, load_audio
from jointspace.data.builtin import (
    build_dataset,
    default_cache_dir,
    load_manifest,
    resolve_manifest,
)
from jointspace.data.collate import Batch, make_collate
from jointspace.data.dataset import PairedDataset
from jointspace.data.image import ImageError, ImageTransform, load_image
from jointspace.data.manifest import Manifest, ManifestError, Problem, open_manifest, read_manifest
from jointspace.data.sampler import EpochBatchSampler, batches_per_epoch

__all__ = [
    "AudioError",
    "AudioTransform",
    "Batch",
    "EpochBatchSampler",
    "ImageError",
    "ImageTransform",
    "Manifest",
    "ManifestError",
    "PairedDataset",
    "Problem",
    "batches_per_epoch",
    "build_dataset",
    "default_cache_dir",
    "load_audio",
    "load_image",
    "load_manifest",
    "make_collate",
    "open_manifest",
    "read_manifest",
    "resolve_manifest",
]
