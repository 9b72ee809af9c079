"""Embed a manifest or shards into an index: streamed, resumable, tied to the model that made it."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from jointspace.data.complete import left_out_note, rows_having
from jointspace.data.manifest import Manifest, ManifestError, is_absent
from jointspace.data.source import Item, ItemSource, ManifestSource
from jointspace.errors import JointspaceError
from jointspace.index import VectorIndex, open_index
from jointspace.index.saving import SaveSchedule
from jointspace.models.embedding import distinct_items, embed_batch, embed_items
from jointspace.models.joint import JointModel
from jointspace.progress import item_progress, logger

METADATA_COLUMNS = ("label", "split")
APPROXIMATE = ("hnsw", "ivfpq", "auto")  # kinds tuned at close
TUNING_QUERIES = 200


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


def open_for_model(
    uri: str,
    fingerprint: str,
    dim: int | None = None,
    *,
    mode: str = "r",
    force: bool = False,
    **info,
) -> VectorIndex:
    """Open an index (for reading unless ``mode="w"``), refusing it when another model built it."""
    index = open_index(uri, dim, mode=mode, force=force, model_fingerprint=fingerprint, **info)
    built_by = index.info.get("model_fingerprint")
    if built_by != fingerprint:
        index.close()
        raise ModelMismatchError(
            f"index {uri} was built by model {built_by}, not by this model ({fingerprint}): "
            "query it with the model that built it, or rebuild it with this one "
            "(`jointspace index build … --force`)"
        )
    return index


def build_index(
    model: JointModel,
    fingerprint: str,
    data: Manifest | ItemSource,
    modality: str,
    uri: str,
    *,
    batch_size: int = 256,
    save_every: int | None = None,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
    force: bool = False,
) -> VectorIndex:
    """Add every distinct ``modality`` item of ``data`` (a manifest or a source such as shards)
    not yet in the index, then save.

    Items stream in batches, so memory does not grow with the data. Saves every ~2 s or 64 MB
    of vectors, whichever first (every ``save_every`` batches when given), so a killed build
    loses at most that much and a rerun adds only what is missing: no duplicate and no gap.
    ``force`` first discards what the index held (a damaged index, another model's, or a folder
    of other files). An approximate index is tuned at close on ~200 embeddings of the
    manifest's paired modality (e.g. captions for images) when it has one: the queries it gets.
    ``fingerprint`` (``Run.fingerprint``) names the model: the index refuses to mix in another
    model's vectors.
    """
    if isinstance(data, Manifest):  # rows without the modality (an empty cell) hold no item
        data, left_out = rows_having(data, [modality])
        if not data.rows:
            raise ManifestError(f"{data.path}: no row has {modality} to index")
        if left_out:
            logger().info("index: %s", left_out_note(left_out, [modality]))
    source = data if isinstance(data, ItemSource) else ManifestSource(data)
    if source.manifest is not None:
        values, rows = distinct_items(source.manifest, modality)
        _check_ids(source.manifest, modality, values, rows)  # before anything is opened
    index = open_for_model(
        uri,
        fingerprint,
        model.config.embed_dim,
        mode="w",
        force=force,
        modality=modality,
        **source.info(),
    )
    if index.info.get("modality", modality) != modality:
        index.close()
        raise ModelMismatchError(
            f"index {uri} holds {index.info['modality']} items, not {modality}: "
            "build another index for them (or pass --force to replace this one)"
        )
    try:
        _add_missing(index, model, source, modality, batch_size, save_every, progress, on_batch)
        if source.manifest is not None:
            _pass_tuning_queries(index, model, source.manifest, modality, batch_size)
    except BaseException:
        index.discard()  # what was saved stays; the lock is released for a rerun
        raise
    return index


def _add_missing(
    index, model, source, modality, batch_size, save_every, progress, on_batch
) -> None:
    # Which items are indexed is asked per batch: memory stays flat however large the index.
    total = source.count(modality)
    # A bar on a terminal, lines in a log; the bar is closed before an error is printed under it.
    with item_progress(total, "index", unit=modality, enabled=progress) as advance:
        _add_batches(index, model, source, modality, batch_size, save_every, advance, on_batch)
    index.save()


def _add_batches(index, model, source, modality, batch_size, save_every, advance, on_batch) -> None:
    items = iter(source.items(modality))
    number, schedule = 0, SaveSchedule(batches=save_every)
    while batch := list(itertools.islice(items, batch_size)):
        done = index.present([item.id for item in batch])
        advance(len(done))
        if not (chunk := [item for item in batch if item.id not in done]):
            continue
        number += 1
        vectors = embed_batch(model, source, modality, chunk, batch_size=batch_size)
        metadata = [{modality: item.value, **_metadata(item)} for item in chunk]
        index.add([item.id for item in chunk], vectors, metadata)
        if schedule.added(vectors.nbytes):
            index.save()
            schedule.saved()
        if on_batch is not None:
            on_batch(number)
        advance(len(chunk))


def _pass_tuning_queries(index, model, manifest: Manifest, modality: str, batch_size) -> None:
    """Hand an approximate index ~TUNING_QUERIES embeddings of the paired modality."""
    if index.info.get("kind") not in APPROXIMATE:
        return
    paired = [m for m in manifest.modalities if m != modality and m in model.modalities]
    if not paired:
        return
    other = "text" if "text" in paired else paired[0]
    values = [v for v in distinct_items(manifest, other)[0] if not is_absent(v)]
    chosen = values[:: max(1, len(values) // TUNING_QUERIES)][:TUNING_QUERIES]  # spread out
    _, queries = embed_items(model, manifest, other, chosen, batch_size=batch_size)
    index.tuning_queries(queries, source=other, manifest=str(manifest.path))


def _check_ids(manifest: Manifest, modality: str, values: list[str], rows: list[dict]) -> None:
    """Every item needs its own non-empty id: refuse the first row that breaks that, by number."""
    number = {id(row): n for n, row in enumerate(manifest.rows, start=1)}
    seen: dict[str, tuple[str, dict]] = {}
    for value, row in zip(values, rows, strict=True):
        where = f"{manifest.path}, row {number[id(row)]} ({modality} {value!r})"
        item = row.get("id", "")
        if not item.strip():
            raise ManifestError(f"{where}: the id is empty; give every row a non-empty id")
        if item in seen:
            other, first = seen[item]
            raise ManifestError(
                f"{where}: the id {item!r} is also the id of row {number[id(first)]} "
                f"({modality} {other!r}); give every distinct item its own id"
            )
        seen[item] = (value, row)


def _metadata(item: Item) -> dict[str, str]:
    return {k: getattr(item, k) for k in METADATA_COLUMNS if getattr(item, k)}
