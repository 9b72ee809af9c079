"""On-disk cache of a frozen tower's pooled features, so locked backbones run once per input.

Entries live under ``ROOT/<tower fingerprint>/`` (weights + preprocessing) and are keyed by a
hash of the input's content (file bytes, text, pixels): a changed file or model simply misses.
Shards are safetensors files written atomically, so a crash loses at most the batch in flight.
Each row carries a checksum of its key and values: a shard whose rows were reordered, cut or
mismatched is set aside as damaged and its rows recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from tqdm.auto import tqdm

from jointspace.artifacts import save_tensors
from jointspace.atomic import atomic_path
from jointspace.data.manifest import FILE_COLUMNS
from jointspace.encoders.base import Tower
from jointspace.errors import InputTypeError
from jointspace.models.modes import evaluating
from jointspace.progress import is_terminal, logger

FORMAT = "2"  # bump when the key scheme or shard layout changes (2: per-row checksums)
SHARD_ROWS = 1024
MAX_SHARDS = 32  # more than this many small shards are merged into one on the next write


class FeatureCache:
    """Pooled features of frozen towers, computed once per (tower fingerprint, input content)."""

    def __init__(self, root: str | Path, *, batch_size: int = 64, progress: bool = True):
        self.root = Path(root).expanduser()
        self.batch_size, self.progress = batch_size, progress
        self.hits = self.misses = 0
        self._tables: dict[str, dict[str, torch.Tensor]] = {}
        self._file_keys: dict[tuple[str, int, int], str] = {}

    @classmethod
    def from_setting(cls, setting: str | None) -> FeatureCache | None:
        """``"auto"`` → ``$JOINTSPACE_CACHE/features``; a path → that directory; off → None."""
        if setting in (None, "", "off", "none", False):
            return None
        if setting == "auto":
            from jointspace.data import default_cache_dir

            return cls(default_cache_dir() / "features")
        return cls(setting)

    @torch.no_grad()
    def features(self, tower: Tower, raws: Sequence[Any]) -> torch.Tensor:
        """``[len(raws), F]`` float32 pooled features on the CPU; computes and stores misses."""
        if not tower.frozen:
            raise ValueError(f"{type(tower).__name__} is not frozen: its features would change")
        fingerprint = tower.fingerprint()
        table = self._table(fingerprint)
        keys = [self.content_key(tower.modality, raw) for raw in raws]
        todo = {key: raw for key, raw in zip(keys, raws, strict=True) if key not in table}
        missing = sum(key in todo for key in keys)
        self.hits, self.misses = self.hits + len(keys) - missing, self.misses + missing
        if todo:
            self._compute(tower, fingerprint, todo)
        if not keys:
            return torch.empty(0, 0)
        return torch.stack([table[key] for key in keys])

    def _compute(self, tower: Tower, fingerprint: str, todo: dict[str, Any]) -> None:
        device = next(tower.parameters()).device
        items = list(todo.items())
        shown = self.progress and len(items) > self.batch_size
        if shown and not is_terminal():  # a bar only on a terminal; a line otherwise
            logger().info("computing %d %s features for the cache", len(items), tower.modality)
        bar = tqdm(
            total=len(items),
            desc=f"caching {tower.modality} features",
            unit="item",
            disable=not (shown and is_terminal()),
        )
        with bar, evaluating(tower):
            for start in range(0, len(items), SHARD_ROWS):
                shard = items[start : start + SHARD_ROWS]
                chunks = []
                for b in range(0, len(shard), self.batch_size):
                    batch = [tower.preprocess(raw) for _, raw in shard[b : b + self.batch_size]]
                    chunks.append(tower.pooled(tower.collate(batch).to(device)).float().cpu())
                    bar.update(len(batch))
                self._store(fingerprint, [key for key, _ in shard], torch.cat(chunks))

    def content_key(self, modality: str, raw: Any) -> str:
        """A hash of what the input holds: file bytes for paths, the text, or the pixels."""
        if modality in FILE_COLUMNS and isinstance(raw, (str, Path)):
            return self._file_key(Path(raw))
        digest = hashlib.blake2b(digest_size=16)
        if isinstance(raw, str):
            digest.update(b"text:" + raw.encode())
        elif isinstance(raw, Image.Image):
            digest.update(f"pil:{raw.mode}:{raw.size}:".encode() + raw.tobytes())
        elif isinstance(raw, np.ndarray):
            digest.update(f"array:{raw.dtype}:{raw.shape}:".encode() + raw.tobytes())
        elif isinstance(raw, bytes):
            digest.update(b"bytes:" + raw)
        else:
            raise InputTypeError(f"cannot cache features of a {type(raw).__name__} input")
        return digest.hexdigest()

    def _file_key(self, path: Path) -> str:
        stat = path.stat()
        # Re-hash only when size or mtime changed: epochs re-read nothing.
        memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if memo not in self._file_keys:
            digest = hashlib.blake2b(b"file:", digest_size=16)
            digest.update(path.read_bytes())
            self._file_keys[memo] = digest.hexdigest()
        return self._file_keys[memo]

    def _directory(self, fingerprint: str) -> Path:
        return self.root / f"v{FORMAT}-{fingerprint}"

    def _table(self, fingerprint: str) -> dict[str, torch.Tensor]:
        if fingerprint not in self._tables:
            table: dict[str, torch.Tensor] = {}
            for shard in sorted(self._directory(fingerprint).glob("shard-*.safetensors")):
                keys, rows = _read_shard(shard)
                table.update(zip(keys, rows, strict=True))
            self._tables[fingerprint] = table
        return self._tables[fingerprint]

    def _store(self, fingerprint: str, keys: list[str], rows: torch.Tensor) -> None:
        directory = self._directory(fingerprint)
        shards = sorted(directory.glob("shard-*.safetensors"))
        table = self._table(fingerprint)
        table.update(zip(keys, rows, strict=True))
        if len(shards) >= MAX_SHARDS:  # merge everything into one shard, then drop the old ones
            for shard in shards:  # re-read: another process may have written some of them
                table.update(zip(*_read_shard(shard), strict=True))
            keys, rows = list(table), torch.stack(list(table.values()))
        _write_shard(directory / f"shard-{uuid.uuid4().hex}.safetensors", keys, rows)
        for old in shards if len(shards) >= MAX_SHARDS else []:
            old.unlink(missing_ok=True)


def _write_shard(path: Path, keys: list[str], rows: torch.Tensor) -> None:
    rows = rows.float().contiguous()
    with atomic_path(path) as tmp:
        tensors = {"features": rows, "checks": _row_checks(keys, rows)}
        save_tensors(tmp, tensors, metadata={"keys": json.dumps(keys)})


def _row_checks(keys: list[str], rows: torch.Tensor) -> torch.Tensor:
    """``[N, 8]`` uint8: a hash of each row's key and values, so rows are verified on read."""
    values = rows.numpy()
    checks = np.empty((len(keys), 8), dtype=np.uint8)
    for i, key in enumerate(keys):
        digest = hashlib.blake2b(key.encode() + values[i].tobytes(), digest_size=8).digest()
        checks[i] = np.frombuffer(digest, dtype=np.uint8)
    return torch.from_numpy(checks)


def _read_shard(path: Path) -> tuple[list[str], torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = json.loads(f.metadata()["keys"])
            rows = f.get_tensor("features")
            checks = f.get_tensor("checks")
        intact = (
            isinstance(keys, list)
            and all(isinstance(k, str) for k in keys)
            and rows.ndim == 2
            and rows.dtype == torch.float32
            and len(keys) == len(rows)
            and torch.equal(checks, _row_checks(keys, rows))
        )
    except (SafetensorError, OSError, KeyError, ValueError, TypeError, RuntimeError):
        intact = False
    if not intact:  # damaged, cut or reordered: only a cache miss, recomputed
        with contextlib.suppress(OSError):  # another process may have set it aside already
            os.replace(path, path.with_suffix(".damaged"))
        return [], torch.empty(0)
    return keys, rows
