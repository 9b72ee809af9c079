"""``jointspace embed``: distinct items (manifest or shards) as vectors in Parquet, by batch."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jointspace._version import __version__
from jointspace.atomic import atomic_path, remove_stale_temps, write_text_atomic
from jointspace.data import Manifest
from jointspace.data.source import Item, ItemSource, ManifestSource
from jointspace.models.embedding import embed_batch
from jointspace.models.joint import JointModel
from jointspace.progress import item_progress, logger
from jointspace.runs.run import Run
from jointspace.train.runlock import LOCK_FILE, RunLockedError, run_lock


def embed_manifest(
    model: JointModel,
    manifest: Manifest,
    modality: str,
    *,
    parts: Path | None = None,
    key: str = "",
    batch_size: int = 256,
) -> pa.Table:
    """A table of unique values with ``id``, ``label`` and a float32 ``embedding`` list column.

    With ``parts``, each batch is saved there atomically as it is done, and batches already
    saved under the same ``key`` (model fingerprint) are reused: a killed run resumes.
    """
    source = ManifestSource(manifest)
    batches = embedded_batches(model, source, modality, parts=parts, key=key, batch_size=batch_size)
    tables = list(batches)
    schema = table_schema(modality, model.config.embed_dim)
    return pa.concat_tables(tables) if tables else schema.empty_table()


def embedded_batches(
    model: JointModel,
    source: ItemSource,
    modality: str,
    *,
    parts: Path | None = None,
    key: str = "",
    batch_size: int = 256,
) -> Iterator[pa.Table]:
    """The source's distinct items as tables of ``batch_size`` rows, one batch in memory at once.

    With ``parts``, each batch is saved there as Parquet when done; a rerun under the same
    ``key`` reuses them. Progress: a bar on a terminal, a log line per tenth otherwise.
    """
    total = source.count(modality)
    schema = table_schema(modality, model.config.embed_dim)
    fingerprint = source.fingerprint(modality)
    tag = f"{key} {modality} {batch_size} {fingerprint}"
    store = _PartStore(parts, tag, schema) if parts else None
    batches = None if total is None else -(-total // batch_size)
    reused = store.count(batches) if store else 0
    if reused:
        of = f" of {batches}" if batches is not None else ""
        logger().info("resuming: %d%s batches already embedded in %s", reused, of, parts)
    with item_progress(total, f"embed {modality}") as advance:
        for number, chunk in enumerate(_chunks(source.items(modality), batch_size)):
            table = store.load(number) if store else None
            if table is None:
                vectors = embed_batch(model, source, modality, chunk, batch_size=batch_size)
                table = _table(chunk, modality, vectors, schema)
                if store:
                    store.save(number, table)
            yield table
            advance(len(chunk))


def table_schema(modality: str, dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),
            (modality, pa.string()),
            ("label", pa.string()),
            ("embedding", pa.list_(pa.float32(), dim)),
        ]
    )


def _table(chunk: list[Item], modality: str, vectors: np.ndarray, schema: pa.Schema) -> pa.Table:
    embedding = pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.ravel(), pa.float32()), vectors.shape[1]
    )
    columns = [[i.id for i in chunk], [i.value for i in chunk], [i.label for i in chunk]]
    return pa.Table.from_arrays([*map(pa.array, columns), embedding], schema=schema)


def _chunks(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def write_batches(
    batches: Iterator[pa.Table],
    schema: pa.Schema,
    path: str | Path,
    metadata: dict[str, str] | None = None,
) -> int:
    """Stream tables into one Parquet file, atomically; returns how many rows it holds.

    ``metadata`` goes into the file's key-value metadata (``read_embedding_metadata``).
    """
    rows = 0
    schema = schema.with_metadata(metadata) if metadata else schema
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for table in batches:
            writer.write_table(table)
            rows += table.num_rows
    return rows


def parts_dir(out_path: Path) -> Path:
    """Where ``embed --out OUT`` keeps finished batches until OUT is written."""
    return out_path.with_name(f".{out_path.name}.parts")


class _PartStore:
    """Finished batches as ``part-NNNNNN.parquet``, valid only under the ``key`` they were made."""

    def __init__(self, directory: Path, key: str, schema: pa.Schema):
        self.directory, self.schema = directory, schema
        key_file = directory / "key.txt"
        if not key_file.is_file() or key_file.read_text() != key:
            # Batches made for another model or other data are useless here; only they go.
            for old in directory.glob("part-*"):
                old.unlink()
        directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(key_file, key)

    def _path(self, number: int) -> Path:
        return self.directory / f"part-{number:06d}.parquet"

    def count(self, total: int | None) -> int:
        if total is not None:
            return sum(self._path(n).is_file() for n in range(total))
        return sum(1 for _ in self.directory.glob("part-*.parquet"))

    def load(self, number: int) -> pa.Table | None:
        path = self._path(number)
        if not path.is_file():
            return None
        try:
            return pq.read_table(path).cast(self.schema)
        except (OSError, ValueError, pa.ArrowException):
            return None  # damaged (should not happen: parts are written atomically): redo it

    def save(self, number: int, table: pa.Table) -> None:
        with atomic_path(self._path(number)) as tmp:
            pq.write_table(table, tmp)


def discard_parts(out_path: Path) -> None:
    """Remove the finished batches once ``out_path`` holds them all (only files embed wrote)."""
    directory = parts_dir(out_path)
    for part in directory.glob("part-*"):
        part.unlink()
    (directory / "key.txt").unlink(missing_ok=True)
    (directory / LOCK_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        directory.rmdir()


@contextlib.contextmanager
def _one_writer(out_path: Path) -> Iterator[None]:
    """Hold ``out_path``'s parts lock, then clear the temp files a killed export left."""
    directory = parts_dir(out_path)
    try:
        with run_lock(directory):
            remove_stale_temps(directory)  # half-written parts
            remove_stale_temps(out_path.parent, out_path.name.__eq__)  # a half-written OUT
            yield
    except RunLockedError:
        raise RunLockedError(
            f"{out_path} is being written by another `jointspace embed` ({directory}); "
            "wait for it to finish or choose another --out"
        ) from None


def embedding_metadata(
    run: Run, source: ItemSource, modality: str, split: str | None, data: str
) -> dict[str, str]:
    """What an embeddings file records about how it was made (all values are text)."""
    info = source.info()
    return {
        "jointspace.version": __version__,
        "jointspace.model": str(run.model_dir.resolve()),
        "jointspace.model_fingerprint": run.fingerprint,
        "jointspace.modality": modality,
        "jointspace.split": split or "",  # empty: every split
        "jointspace.data": data,  # --data as given, or the run's own manifest
        "jointspace.source": info.get("manifest") or info.get("shards") or data,
        "jointspace.embed_dim": str(run.model.config.embed_dim),
    }


def read_embedding_metadata(path: str | Path) -> dict[str, str]:
    """The ``jointspace.*`` key-value metadata of a file ``jointspace embed`` wrote."""
    raw = pq.read_schema(path).metadata or {}
    return {
        key.decode(): value.decode() for key, value in raw.items() if key.startswith(b"jointspace.")
    }


def export_embeddings(
    run: Run,
    out_path: Path,
    modality: str,
    *,
    data: str | Path | None = None,
    split: str | None = None,
    skip_bad: bool = False,
    batch_size: int = 256,
) -> int:
    """Embed ``modality``'s distinct items into Parquet at ``out_path``; returns how many.

    ``data`` is a manifest or shards; batches stream to the file, one in memory at a time.
    Finished batches wait beside ``out_path`` (tied to the model's fingerprint) until it is
    written atomically, so a killed export, run again, embeds only what is left. The file's
    metadata records the model, its fingerprint, modality, split and data (``embedding_metadata``).
    """
    source = run.source(data, modality, split=split, skip_bad=skip_bad)
    metadata = embedding_metadata(run, source, modality, split, run.manifest_spec(data))
    schema = table_schema(modality, run.model.config.embed_dim)
    with _one_writer(out_path):
        batches = embedded_batches(
            run.model,
            source,
            modality,
            parts=parts_dir(out_path),
            key=run.fingerprint,
            batch_size=batch_size,
        )
        count = write_batches(batches, schema, out_path, metadata)
        discard_parts(out_path)
    return count
