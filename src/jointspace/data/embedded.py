"""Media bytes held in manifest cells (the Hugging Face ``{bytes, path}`` layout) as files.

Each distinct blob is written once, named by its SHA-256, into ``<manifest stem>.files/`` next to
the manifest, so every later stage (towers, index, ``/media``) sees an ordinary relative path.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from jointspace.atomic import atomic_path
from jointspace.data.manifest import ManifestError

AUDIO_MAGIC = {b"RIFF": "wav", b"fLaC": "flac", b"OggS": "ogg"}


def files_dir(manifest: Path) -> Path:
    """Where the blobs of ``manifest`` are written."""
    return manifest.with_name(f"{manifest.stem}.files")


def media_cell(value: Any, manifest: Path, where: str) -> str:
    """A file column's cell as a path relative to the manifest: a string, bytes or a struct."""
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, dict):
        blob, path = value.get("bytes"), value.get("path")
        if blob:
            return media_cell(blob, manifest, where)
        if path is None or isinstance(path, str):
            return path or ""
        raise ManifestError(f"{where}: the 'path' field is not a string")
    if isinstance(value, bytes | bytearray | memoryview):
        return _write_blob(bytes(value), manifest, where)
    raise ManifestError(f"{where}: expected a path, image bytes or a {{bytes, path}} struct")


def _write_blob(data: bytes, manifest: Path, where: str) -> str:
    digest = hashlib.sha256(data).hexdigest()
    folder = files_dir(manifest)
    target = folder / f"{digest}.{_suffix(data)}"
    if target.is_file():
        # Named by content: a file with this name and size is this blob; never overwrite others.
        if target.stat().st_size != len(data):
            raise ManifestError(f"{where}: {target} exists with other content; remove or move it")
    else:
        try:
            folder.mkdir(exist_ok=True)
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
        except OSError as err:
            raise ManifestError(
                f"{where}: cannot write embedded media to {folder} ({err.strerror}); "
                "copy the manifest to a writable folder or run `jointspace data convert "
                "--format hf`"
            ) from err
    return f"{folder.name}/{target.name}"


def _suffix(data: bytes) -> str:
    if data[:4] in AUDIO_MAGIC:
        return AUDIO_MAGIC[data[:4]]
    try:
        with Image.open(io.BytesIO(data)) as image:  # header only: nothing is decoded here
            fmt = (image.format or "bin").lower()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return "bin"  # validation reports unreadable bytes with the row and column
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "png" if data[:4] == b"\x89PNG" else "bin"
    return "jpg" if fmt == "jpeg" else fmt
