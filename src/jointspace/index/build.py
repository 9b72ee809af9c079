"""Embed a manifest into an index: batched, resumable, tied to the model that made it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from jointspace.data.manifest import Manifest
from jointspace.embed import unique_items
from jointspace.errors import JointspaceError
from jointspace.evaluate.retrieval import embed_values
from jointspace.index import VectorIndex, open_index
from jointspace.models.io import model_fingerprint
from jointspace.models.joint import JointModel

METADATA_COLUMNS = ("label", "split")


class ModelMismatchError(JointspaceError, ValueError):
    """The index was built by another model: its vectors live in another space."""


def indexed_media(index: VectorIndex) -> tuple[str, Path | None]:
    """The modality an index holds and the folder its stored media paths are relative to."""
    root = Path(index.info["manifest"]).parent if "manifest" in index.info else None
    return index.info.get("modality", "image"), root


def media_path(root: Path | None, stored: str) -> Path | None:
    """The file an item's stored path names, or None unless it is a file under ``root``."""
    if root is None:
        return None
    # Stored paths come from manifests: one must not reach outside the dataset's folder.
    path = (root / stored).resolve()
    return path if path.is_relative_to(root.resolve()) and path.is_file() else None


def open_for_model(uri: str, fingerprint: str, dim: int | None = None, **info) -> VectorIndex:
    """Open an index, refusing it clearly when another model built it."""
    index = open_index(uri, dim, model_fingerprint=fingerprint, **info)
    built_by = index.info.get("model_fingerprint")
    if built_by != fingerprint:
        index.close()
        raise ModelMismatchError(
            f"index {uri} was built by model {built_by}, not by this model ({fingerprint}): "
            "rebuild it with this model or query it with the model that built it"
        )
    return index


def build_index(
    model: JointModel,
    model_dir: str | Path,
    manifest: Manifest,
    modality: str,
    uri: str,
    *,
    batch_size: int = 256,
    save_every: int = 4,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> VectorIndex:
    """Add every distinct ``modality`` item of ``manifest`` not yet in the index, then save.

    Saves every ``save_every`` batches, so a killed build loses at most those batches and a
    rerun adds only what is missing: no duplicate and no gap.
    """
    fingerprint = model_fingerprint(model_dir)
    index = open_for_model(
        uri,
        fingerprint,
        model.config.embed_dim,
        modality=modality,
        manifest=str(manifest.path.resolve()),
    )
    values, rows = unique_items(manifest, modality)
    done = index.ids()
    todo = [(v, r) for v, r in zip(values, rows, strict=True) if r["id"] not in done]
    bar = tqdm(total=len(values), initial=len(values) - len(todo), desc="index", unit=modality)
    bar.disable = not progress
    for number, start in enumerate(range(0, len(todo), batch_size), start=1):
        chunk = todo[start : start + batch_size]
        vectors = embed_values(model, manifest, modality, [v for v, _ in chunk], batch_size)
        metadata = [{modality: v, **_metadata(r)} for v, r in chunk]
        index.add([r["id"] for _, r in chunk], vectors, metadata)
        if number % save_every == 0:
            index.save()
        if on_batch is not None:
            on_batch(number)
        bar.update(len(chunk))
    bar.close()
    index.save()
    return index


def _metadata(row: dict[str, str]) -> dict[str, str]:
    return {k: row[k] for k in METADATA_COLUMNS if row.get(k)}
