"""``jointspace embed``: a manifest's distinct items as vectors in Parquet, resumable by batch."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from jointspace.atomic import atomic_path, write_text_atomic
from jointspace.data import Manifest
from jointspace.models.embedding import distinct_items, embed_items
from jointspace.models.joint import JointModel
from jointspace.progress import is_terminal, logger
from jointspace.runs.run import Run


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

    With ``parts``, each batch of vectors is saved there atomically as it is done, and batches
    already saved under the same ``key`` (model fingerprint) are reused: a killed run resumes.
    Progress: a bar on a terminal, a log line per tenth of the work otherwise.
    """
    values, rows = distinct_items(manifest, modality)
    starts = range(0, len(values), batch_size)
    store = _PartStore(parts, _parts_key(key, modality, values, batch_size)) if parts else None
    reused = store.count(len(starts)) if store else 0
    if reused:
        message = "resuming: %d of %d batches already embedded in %s"
        logger().info(message, reused, len(starts), parts)
    vectors = []
    with _progress(len(values), f"embed {modality}") as advance:
        for number, start in enumerate(starts):
            batch = values[start : start + batch_size]
            done = store.load(number) if store else None
            if done is None:
                _, done = embed_items(model, manifest, modality, batch, batch_size=batch_size)
                if store:
                    store.save(number, done)
            vectors.append(done)
            advance(len(batch))
    empty = np.zeros((0, model.config.embed_dim), np.float32)
    matrix = np.concatenate(vectors) if vectors else empty
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), matrix.shape[1])
    return pa.table(
        {
            "id": [r["id"] for r in rows],
            modality: values,
            "label": [r.get("label", "") for r in rows],
            "embedding": embedding,
        }
    )


def write_embeddings(table: pa.Table, path: str | Path) -> None:
    """Write Parquet atomically: an interrupted run leaves no half file."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def parts_dir(out_path: Path) -> Path:
    """Where ``embed --out OUT`` keeps finished batches until OUT is written."""
    return out_path.with_name(f".{out_path.name}.parts")


class _PartStore:
    """Finished batches as ``part-NNNNNN.npy``, valid only for the ``key`` they were made under."""

    def __init__(self, directory: Path, key: str):
        self.directory = directory
        key_file = directory / "key.txt"
        if not key_file.is_file() or key_file.read_text() != key:
            # Batches made for another model or other data are useless here; only they go.
            for old in directory.glob("part-*.npy"):
                old.unlink()
        directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(key_file, key)

    def _path(self, number: int) -> Path:
        return self.directory / f"part-{number:06d}.npy"

    def count(self, total: int) -> int:
        return sum(self._path(n).is_file() for n in range(total))

    def load(self, number: int) -> np.ndarray | None:
        path = self._path(number)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # damaged (should not happen: parts are written atomically): redo it

    def save(self, number: int, vectors: np.ndarray) -> None:
        with atomic_path(self._path(number)) as tmp, open(tmp, "wb") as f:
            np.save(f, vectors, allow_pickle=False)


def _parts_key(key: str, modality: str, values: list[str], batch_size: int) -> str:
    digest = hashlib.sha256("\n".join(values).encode())
    return f"{key} {modality} {batch_size} {len(values)} {digest.hexdigest()}"


@contextlib.contextmanager
def _progress(total: int, desc: str):
    """A tqdm bar on a terminal; otherwise an INFO line at every tenth of ``total``."""
    if is_terminal():
        with tqdm(total=total, desc=desc, unit="item") as bar:
            yield bar.update
        return
    log = logger()  # the library's stderr handler, unless the application configured logging
    state = {"done": 0, "next": 0}

    def advance(count: int) -> None:
        state["done"] += count
        if state["done"] >= state["next"] or state["done"] == total:
            log.info("%s: %d/%d", desc, state["done"], total)
            state["next"] = state["done"] + max(1, total // 10)

    yield advance


def discard_parts(out_path: Path) -> None:
    """Remove the finished batches once ``out_path`` holds them all (only files embed wrote)."""
    directory = parts_dir(out_path)
    for part in directory.glob("part-*.npy"):
        part.unlink()
    (directory / "key.txt").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        directory.rmdir()


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

    Finished batches wait beside ``out_path`` (tied to the model's fingerprint) until it is
    written atomically, so a killed export, run again, embeds only what is left.
    """
    manifest = run.manifest(data, modalities=[modality], split=split, skip_bad=skip_bad)
    table = embed_manifest(
        run.model,
        manifest,
        modality,
        parts=parts_dir(out_path),
        key=run.fingerprint,
        batch_size=batch_size,
    )
    write_embeddings(table, out_path)
    discard_parts(out_path)
    return table.num_rows
