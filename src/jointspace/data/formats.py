"""Readers that turn common dataset layouts (COCO, Karpathy, HF, folders, Clotho) into manifests."""

from __future__ import annotations

import inspect
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from jointspace.atomic import atomic_path
from jointspace.data.manifest import FILE_COLUMNS, KNOWN_COLUMNS, SUFFIXES, ManifestError, quote
from jointspace.registry import available, lookup

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
TEXT_COLUMNS = ("text", "caption", "sentence", "captions")
IMAGE_COLUMNS = ("image", "img", "image_path")
SPLIT_WORDS = {
    "train": "train",
    "restval": "train",
    "dev": "train",
    "development": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "eval": "test",
    "evaluation": "test",
}

Row = dict[str, str]


def _row(id: str, text: str, **fields: str) -> Row:
    """A manifest row holding only the columns this reader knows about."""
    return {"id": id, "text": text, **fields}


def _split_from_name(name: str) -> str:
    """The split a file name mentions (``captions_train2017`` -> ``train``), else ``""``."""
    for word in re.split(r"[^a-z]+", name.lower()):
        if word in SPLIT_WORDS:
            return SPLIT_WORDS[word]
    return ""


def _listed(columns: Any) -> str:
    return ", ".join(quote(str(c)) for c in columns)


def _abs(path: Path) -> str:
    return str(path.resolve())


def _need(record: Any, key: str, src: Path, what: str) -> Any:
    """``record[key]``, or a ManifestError naming the file, the record and the key."""
    if not isinstance(record, dict):
        raise ManifestError(f"{src}: {what} is not a JSON object")
    if key not in record or record[key] is None:
        raise ManifestError(f"{src}: {what} has no '{key}'")
    return record[key]


def _need_list(record: Any, key: str, src: Path, what: str) -> list[Any]:
    value = _need(record, key, src, what)
    if not isinstance(value, list):
        raise ManifestError(f"{src}: {what} '{key}' is not a list")
    return value


def _load_json(src: Path) -> Any:
    if not src.is_file():
        raise ManifestError(f"file not found: {src}")
    try:
        return json.loads(src.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestError(f"{src}: not valid JSON ({err})") from err


def _read_csv(src: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not src.is_file():
        raise ManifestError(f"file not found: {src}")
    try:
        frame = pd.read_csv(src, dtype=str, keep_default_na=False, na_filter=False)
    except Exception as err:  # pandas raises many types; all mean "cannot parse"
        raise ManifestError(f"{src}: cannot read CSV: {err}") from err
    for column in required:
        if column not in frame.columns:
            raise ManifestError(f"{src}: no column '{column}' (columns: {_listed(frame.columns)})")
    return frame


def _images_dir(src: Path, images_dir: Path | None) -> Path:
    if images_dir is not None:
        return Path(images_dir)
    return src.parent / "images" if (src.parent / "images").is_dir() else src.parent


def read_coco(src: Path, out_dir: Path, *, images_dir: Path | None = None) -> list[Row]:
    """COCO captions JSON: one row per annotation, images looked up by ``image_id``."""
    src = Path(src)
    data, root = _load_json(src), _images_dir(src, images_dir)
    files = {}
    for i, image in enumerate(_need_list(data, "images", src, "the file")):
        files[_need(image, "id", src, f"image {i}")] = _need(image, "file_name", src, f"image {i}")
    split, rows = _split_from_name(src.stem), []
    for i, ann in enumerate(_need_list(data, "annotations", src, "the file")):
        what = f"annotation {i}"
        ann_id, caption = _need(ann, "id", src, what), _need(ann, "caption", src, what)
        image_id = _need(ann, "image_id", src, what)
        if image_id not in files:
            raise ManifestError(f"{src}: {what} has unknown image_id {image_id}")
        image = _abs(root / files[image_id])
        rows.append(_row(str(ann_id), str(caption).strip(), image=image, split=split))
    return rows


def read_karpathy(src: Path, out_dir: Path, *, images_dir: Path | None = None) -> list[Row]:
    """Karpathy split JSON (Flickr30k, COCO): one row per sentence."""
    src = Path(src)
    data, root = _load_json(src), _images_dir(src, images_dir)
    rows = []
    for i, image in enumerate(_need_list(data, "images", src, "the file")):
        what = f"image {i}"
        path = root / str(image.get("filepath") or "") / _need(image, "filename", src, what)
        split = str(_need(image, "split", src, what))
        for k, sentence in enumerate(_need_list(image, "sentences", src, what)):
            s_what = f"{what} sentence {k}"
            sent_id, raw = (
                _need(sentence, "sentid", src, s_what),
                _need(sentence, "raw", src, s_what),
            )
            split_name = "train" if split == "restval" else split
            rows.append(_row(str(sent_id), str(raw).strip(), image=_abs(path), split=split_name))
    return rows


def _read_arrow(path: Path) -> pa.Table:
    try:
        with pa.ipc.open_stream(pa.memory_map(str(path))) as reader:
            return reader.read_all()
    except pa.ArrowInvalid:
        try:
            with pa.ipc.open_file(pa.memory_map(str(path))) as reader:
                return reader.read_all()
        except pa.ArrowInvalid as err:
            raise ManifestError(f"{path}: not an Arrow stream or file ({err})") from err


def _hf_tables(src: Path) -> Iterator[tuple[Path, pa.Table]]:
    """Every table of a saved HF dataset, parquet/arrow file or folder of parquet files."""
    if src.is_file():
        files = [src]
    elif src.is_dir():
        files = sorted(src.rglob("*.arrow")) or sorted(src.rglob("*.parquet"))
    else:
        raise ManifestError(f"not found: {src}")
    if not files:
        raise ManifestError(f"{src}: no .arrow or .parquet files")
    for path in files:
        if path.suffix == ".arrow":
            yield path, _read_arrow(path)
        elif path.suffix == ".parquet":
            try:
                yield path, pq.read_table(path)
            except pa.ArrowException as err:
                raise ManifestError(f"{path}: cannot read parquet ({err})") from err
        else:
            raise ManifestError(f"{path}: expected a .parquet or .arrow file or a folder")


def _pick(
    override: str | None, names: tuple[str, ...], columns: list[str], path: Path, role: str
) -> str:
    found = [override] if override else [c for c in names if c in columns]
    if not found or found[0] not in columns:
        wanted = override or " or ".join(names)
        raise ManifestError(
            f"{path}: no {role} column among {_listed(columns)} (wanted {quote(wanted)})"
        )
    return found[0]


def _write_bytes(data: bytes, files_dir: Path, index: int, where: str, force: bool) -> str:
    """Embedded image bytes written as-is to ``files_dir/{index:06d}.{ext}``."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = (image.format or "").lower()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        raise ManifestError(f"{where}: embedded bytes are not a readable image") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ManifestError(f"{where}: embedded image is too large to decode") from err
    files_dir.mkdir(parents=True, exist_ok=True)
    target = files_dir / f"{index:06d}.{'jpg' if fmt == 'jpeg' else fmt or 'bin'}"
    if target.is_file() and not force and target.read_bytes() != data:
        raise ManifestError(f"{target} exists with other content; pass --force to overwrite it")
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return _abs(target)


def _hf_image(
    value: Any, base: Path, files_dir: Path, index: int, where: str, force: bool = False
) -> str:
    if isinstance(value, dict):
        if value.get("bytes"):
            return _write_bytes(value["bytes"], files_dir, index, where, force)
        value = value.get("path")
    if isinstance(value, bytes | bytearray):
        return _write_bytes(bytes(value), files_dir, index, where, force)
    if isinstance(value, str) and value:
        return _abs(base / value)
    raise ManifestError(f"{where}: no image bytes or path")


def read_hf(
    src: Path,
    out_dir: Path,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    force: bool = False,
) -> list[Row]:
    """A Hugging Face dataset (``save_to_disk`` folder, parquet/arrow): one row per caption."""
    src = Path(src)
    base, files_dir = (src if src.is_dir() else src.parent), Path(out_dir) / "files"
    rows, index = [], 0
    for path, table in _hf_tables(src):
        columns = table.column_names
        text_col = _pick(text_column, TEXT_COLUMNS, columns, path, "text")
        image_col = _pick(image_column, IMAGE_COLUMNS, columns, path, "image")
        default_split = _split_from_name(path.relative_to(base).as_posix() if src.is_dir() else "")
        for number, record in enumerate(table.to_pylist()):
            where = f"{path}, row {number}, column"
            cell = record[image_col]
            image = _hf_image(cell, base, files_dir, index, f"{where} '{image_col}'", force)
            texts = record[text_col]
            if not isinstance(texts, list | str):
                raise ManifestError(f"{where} '{text_col}': expected a string or list of strings")
            key = str(record["id"]) if record.get("id") is not None else str(index)
            label = "" if record.get("label") is None else str(record["label"])
            split = str(record.get("split") or default_split)
            many = isinstance(texts, list)
            for k, text in enumerate(texts if many else [texts]):
                row_id = f"{key}-{k}" if many and len(texts) > 1 else key
                rows.append(_row(row_id, str(text).strip(), image=image, label=label, split=split))
            index += 1
    return rows


def _fill(template: str, label: str) -> str:
    try:
        return template.format(label=label)
    except (KeyError, IndexError, ValueError) as err:
        raise ManifestError(f"template {quote(template)}: only {{label}} may be filled") from err


def read_folder(src: Path, out_dir: Path, *, template: str = "a photo of a {label}") -> list[Row]:
    """``src/<class>/<image>``: label = class folder, text = template filled with the class."""
    src = Path(src)
    if not src.is_dir():
        raise ManifestError(f"not a folder: {src}")
    rows = []
    for folder in sorted(d for d in src.iterdir() if d.is_dir()):
        label, text = folder.name, _fill(template, folder.name.replace("_", " ").replace("-", " "))
        for file in sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES):
            image = _abs(file)
            rows.append(_row(f"{label}/{file.stem}", text, image=image, label=label, split=""))
    if not rows:
        raise ManifestError(f"{src}: no class folders with images (expected {src}/<class>/<image>)")
    return rows


def read_clotho(src: Path, out_dir: Path, *, audio_dir: Path | None = None) -> list[Row]:
    """Clotho captions CSV (``file_name, caption_1..caption_5``): one row per caption."""
    src = Path(src)
    frame = _read_csv(src, ("file_name",))
    numbered = [(c, re.fullmatch(r"caption_(\d+)", c)) for c in frame.columns]
    captions = sorted((int(m.group(1)), c) for c, m in numbered if m)
    if not captions:
        raise ManifestError(f"{src}: no 'caption_N' column (columns: {_listed(frame.columns)})")
    word = src.stem.rsplit("_", 1)[-1]
    if audio_dir is None:
        audio_dir = src.parent / word if (src.parent / word).is_dir() else src.parent
    split, rows = SPLIT_WORDS.get(word.lower(), ""), []
    for record in frame.to_dict(orient="records"):
        audio = _abs(Path(audio_dir) / record["file_name"])
        stem = Path(record["file_name"]).stem
        for k, column in captions:
            if record[column].strip():
                rows.append(_row(f"{stem}-{k}", record[column].strip(), audio=audio, split=split))
    return rows


def read_audiocaps(src: Path, out_dir: Path, *, audio_dir: Path | None = None) -> list[Row]:
    """AudioCaps CSV (``audiocap_id, youtube_id, start_time, caption``): one row per caption."""
    src = Path(src)
    frame = _read_csv(src, ("audiocap_id", "youtube_id", "caption"))
    if audio_dir is None:
        audio_dir = src.parent / src.stem if (src.parent / src.stem).is_dir() else src.parent
    split, rows = _split_from_name(src.stem), []
    for record in frame.to_dict(orient="records"):
        audio = Path(audio_dir) / f"{record['audiocap_id']}.wav"
        if not audio.is_file():
            audio = Path(audio_dir) / f"{record['youtube_id']}.wav"
        caption = record["caption"].strip()
        rows.append(_row(record["audiocap_id"], caption, audio=_abs(audio), split=split))
    return rows


def _relative(value: str, root: Path) -> str:
    """``value`` relative to ``root`` (POSIX separators) when it lies under it, else unchanged."""
    if not value or not Path(value).is_absolute() or not Path(value).is_relative_to(root):
        return value
    return Path(os.path.relpath(value, root)).as_posix()


def convert(src: Path, fmt: str, out: Path, *, force: bool = False, **options: Any) -> Path:
    """Read ``src`` as ``fmt`` and write the manifest ``out`` (.csv, .jsonl or .parquet).

    An existing ``out`` (or extracted file with other content) is replaced only with ``force``.
    """
    src, out = Path(src), Path(out)
    kind = SUFFIXES.get(out.suffix.lower())
    if kind is None:
        raise ManifestError(
            f"{out}: unsupported manifest suffix '{out.suffix}' (use {', '.join(SUFFIXES)})"
        )
    try:
        reader = lookup("format", fmt)
    except KeyError:
        raise ManifestError(
            f"unknown format '{fmt}'; known: {', '.join(available('format'))}"
        ) from None
    if out.exists() and not force:
        raise ManifestError(f"{out} already exists; pass --force to overwrite it")
    accepted = [k for k in inspect.signature(reader).parameters if k not in ("src", "out_dir")]
    for key in options:
        if key not in accepted:
            takes = ", ".join(f"--{k.replace('_', '-')}" for k in accepted if k != "force")
            raise ManifestError(
                f"--{key.replace('_', '-')} does not apply to format {fmt} "
                f"(it takes: {takes or 'no options'})"
            )
    if "force" in accepted:
        options = {**options, "force": force}
    root = out.parent.resolve()
    rows = reader(src, root, **options)
    if not rows:
        raise ManifestError(f"{src}: no rows read as format '{fmt}'")
    for row in rows:
        for column in FILE_COLUMNS:
            if column in row:
                row[column] = _relative(row[column], root)
    columns = [c for c in KNOWN_COLUMNS if any(row.get(c) for row in rows)]
    frame = pd.DataFrame([{c: row.get(c, "") for c in columns} for row in rows], columns=columns)
    with atomic_path(out) as tmp:
        if kind == "csv":
            frame.to_csv(tmp, index=False)
        elif kind == "jsonl":
            lines = [json.dumps(r, ensure_ascii=False) for r in frame.to_dict(orient="records")]
            tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        else:
            frame.to_parquet(tmp, index=False)
    return out
