"""Bad manifests, images and audio: each ends in one clear error, never a traceback or a hang."""

import io
import json
import re
import struct
import time
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile
from PIL import Image
from typer.testing import CliRunner

from jointspace.cli import app
from jointspace.data import (
    AudioError,
    ImageError,
    ManifestError,
    load_audio,
    load_image,
    open_manifest,
    read_manifest,
)

runner = CliRunner()
FAST = 5.0  # seconds: far above any case's time, far below a hang


# --- generated media -------------------------------------------------------------------------


def png(size=(8, 8), mode="RGB", **save) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format=save.pop("format", "PNG"), **save)
    return buffer.getvalue()


def png_claiming(width, height) -> bytes:
    data = bytearray(png((1, 1), "L"))
    ihdr = bytearray(data[12:29])
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def png_bomb(side) -> bytes:
    def chunk(kind, body):
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    squeeze = zlib.compressobj(9)
    idat = b"".join(squeeze.compress(bytes(side + 1)) for _ in range(side)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    parts = chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + parts


def wav(samples=None, rate=16_000, **options) -> bytes:
    buffer = io.BytesIO()
    samples = np.zeros(1600, np.float32) if samples is None else samples
    soundfile.write(buffer, samples, rate, format=options.pop("format", "WAV"), **options)
    return buffer.getvalue()


def flac_silence(seconds, rate=8_000) -> bytes:
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", rate, 1, format="FLAC") as clip:
        for _ in range(int(seconds // 10)):
            clip.write(np.zeros(rate * 10, np.float32))
    return buffer.getvalue()


def flac_total(data, total) -> bytes:
    patched = bytearray(data)
    fields = (int.from_bytes(patched[18:26], "big") & ~((1 << 36) - 1)) | total
    patched[18:26] = fields.to_bytes(8, "big")
    return bytes(patched)


def nan_wav() -> bytes:
    wave = np.zeros(1600, np.float32)
    wave[5] = np.nan
    return wav(wave, subtype="FLOAT")


def image_16bit() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), 40_000, np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def palette_transparent() -> bytes:
    buffer = io.BytesIO()
    Image.new("P", (8, 8)).save(buffer, format="PNG", transparency=0)
    return buffer.getvalue()


# name → encoded bytes; the ones marked True may load (odd but valid), the rest must be refused
IMAGES = {
    "truncated.png": (lambda: png((64, 64))[:60], False),
    "zero.png": (lambda: b"", False),
    "sliver.png": (lambda: png((1, 20_000), "L"), False),
    "long-sliver.png": (lambda: png((2_000_000, 1), "L"), False),
    "bomb-header.png": (lambda: png_claiming(20_000, 20_000), False),
    "623M-header.png": (lambda: png_claiming(24_960, 24_960), False),
    "real-bomb.png": (lambda: png_bomb(8_000), False),
    "text.png": (lambda: b"this is not an image\n" * 10, False),
    "truncated.jpg": (lambda: png((64, 64), format="JPEG")[:200], False),
    "junk.gif": (lambda: b"GIF89a" + bytes(range(256)) * 4, False),
    "cmyk.jpg": (lambda: png((8, 8), "CMYK", format="JPEG"), True),
    "sixteen.png": (image_16bit, True),
    "palette.png": (palette_transparent, True),
    "la.png": (lambda: png((8, 8), "LA"), True),
    "one-bit.png": (lambda: png((8, 8), "1"), True),
}
AUDIO = {
    "truncated.wav": lambda: wav()[:30],
    "zero.wav": lambda: b"",
    "odd-rate.wav": lambda: wav(rate=999_999_937),
    "one-hertz.wav": lambda: wav(rate=1),
    "bomb.flac": lambda: flac_silence(660),
    "claims-99-days.flac": lambda: flac_total(flac_silence(10), (1 << 36) - 1),
    "no-frames.wav": lambda: wav(np.zeros(0, np.float32)),
    "nan.wav": nan_wav,
    "text.wav": lambda: b"RIFF but really just text" * 4,
    "many-channels.wav": lambda: wav(np.zeros((100, 33), np.float32)),
}


# --- manifests ---------------------------------------------------------------------------------


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def parquet(tmp_path, name, table):
    pq.write_table(table, tmp_path / name)
    return tmp_path / name


def hf_table(*images):
    return pa.table({"text": [f"t{i}" for i in range(len(images))], "image": list(images)})


MANIFESTS = {
    "csv-no-modality": lambda t: write(t, "m.csv", "id,label\n1,a\n"),
    "csv-unknown-column": lambda t: write(t, "m.csv", "id,text,imgae\n1,a,b.png\n"),
    "csv-empty-file": lambda t: write(t, "m.csv", b""),
    "csv-header-only": lambda t: write(t, "m.csv", "id,text\n"),
    "csv-binary-junk": lambda t: write(t, "m.csv", png()),
    "csv-latin1": lambda t: write(t, "m.csv", b"id,text\n1,caf\xe9\n"),
    "csv-duplicate-column": lambda t: write(t, "m.csv", "id,text,text\n1,a,b\n"),
    "csv-unterminated-quote": lambda t: write(t, "m.csv", 'id,text\n1,"open\n'),
    "csv-empty-id": lambda t: write(t, "m.csv", "id,text\n1,a\n,b\n"),
    "csv-duplicate-id": lambda t: write(t, "m.csv", "id,text\n1,a\n1,b\n"),
    "csv-dotdot-id": lambda t: write(t, "m.csv", "id,text\n../x,a\n"),
    "csv-missing-image": lambda t: write(t, "m.csv", "id,text,image\n1,a,gone.png\n"),
    "csv-image-is-folder": lambda t: write(t, "m.csv", "id,text,image\n1,a,.\n"),
    # An empty cell is an absent modality (tests/data/test_absent.py); a row with none is bad.
    "csv-empty-text-and-image": lambda t: write(t, "m.csv", "id,text,image\n1,,\n"),
    "csv-empty-text": lambda t: write(t, "m.csv", "id,text\n1,   \n"),
    "csv-bad-split-name": lambda t: write(t, "m.csv", "id,text,split\n1,a,\x07\n"),
    "jsonl-deeply-nested": lambda t: write(
        t, "m.jsonl", '{"text": "a", "meta_x": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
    ),
    "jsonl-not-an-object": lambda t: write(t, "m.jsonl", '["text", "a"]\n'),
    "jsonl-invalid": lambda t: write(t, "m.jsonl", '{"text": "a",}\n'),
    "jsonl-duplicate-key": lambda t: write(t, "m.jsonl", '{"text": "a", "text": "b"}\n'),
    "jsonl-list-value": lambda t: write(t, "m.jsonl", '{"text": ["a", "b"]}\n'),
    "jsonl-nul-in-id": lambda t: write(t, "m.jsonl", '{"id": "a\\u0000b", "text": "a"}\n'),
    "jsonl-binary-junk": lambda t: write(t, "m.jsonl", b'{"text": "a"}\n\x00\x01\xff'),
    "jsonl-latin1": lambda t: write(t, "m.jsonl", b'{"text": "caf\xe9"}\n'),
    "jsonl-empty": lambda t: write(t, "m.jsonl", "\n\n"),
    "parquet-junk": lambda t: write(t, "m.parquet", b"PAR1 and nothing else"),
    "parquet-truncated": lambda t: write(
        t, "m.parquet", (parquet(t, "x.parquet", hf_table("a.png")).read_bytes())[:-20]
    ),
    "parquet-duplicate-columns": lambda t: parquet(
        t, "m.parquet", pa.table([pa.array(["a"]), pa.array(["b"])], names=["text", "text"])
    ),
    "parquet-hf-bad-bytes": lambda t: parquet(
        t, "m.parquet", hf_table({"bytes": b"\x89PNG junk", "path": "a.png"})
    ),
    "parquet-hf-bomb-bytes": lambda t: parquet(
        t, "m.parquet", hf_table({"bytes": png_claiming(20_000, 20_000), "path": "b.png"})
    ),
    "parquet-hf-sliver-bytes": lambda t: parquet(
        t, "m.parquet", hf_table({"bytes": png((1, 5_000), "L"), "path": None})
    ),
    "parquet-hf-no-bytes-no-path-no-text": lambda t: parquet(
        t, "m.parquet", pa.table({"text": [""], "image": [{"bytes": None, "path": None}]})
    ),
    "parquet-list-text": lambda t: parquet(
        t, "m.parquet", pa.table({"text": [["a", "b"]], "label": ["x"]})
    ),
    "parquet-struct-text": lambda t: parquet(
        t, "m.parquet", pa.table({"text": [{"a": 1}], "label": ["x"]})
    ),
    "unsupported-suffix": lambda t: write(t, "m.txt", "id,text\n1,a\n"),
    "not-found": lambda t: t / "nothing.csv",
}


def assert_one_clear_error(result, *, may_pass=False):
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if may_pass and result.exit_code == 0:
        return
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: "), result.output
    assert " at 0x" not in result.output and not re.search(r"(?<![\w\\])b'", result.output)


def validate(path):
    start = time.perf_counter()
    result = runner.invoke(app, ["data", "validate", str(path)], terminal_width=300)
    assert time.perf_counter() - start < FAST
    return result


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_bad_manifests_are_one_clear_error(tmp_path, case):
    path = MANIFESTS[case](tmp_path)
    assert_one_clear_error(validate(path), may_pass=case == "csv-bad-split-name")
    with pytest.raises(ManifestError):
        read_manifest(path).split("train")


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_bad_images_in_a_manifest_and_through_the_loader(tmp_path, name):
    make, may_load = IMAGES[name]
    data = make()
    (tmp_path / name).write_bytes(data)
    manifest = write(tmp_path, "m.csv", f"id,text,image\n1,a picture,{name}\n")
    result = validate(manifest)
    assert_one_clear_error(result, may_pass=may_load)
    if result.exit_code == 1:
        assert "row 1, column 'image'" in result.output
    report = tmp_path / "report.json"
    args = ["data", "inspect", str(manifest), "--json", str(report)]
    inspected = runner.invoke(app, args, terminal_width=300)
    assert inspected.exit_code == 0 and inspected.exception is None, inspected.output
    assert len(json.loads(report.read_text())["problems"]) == (0 if may_load else 1)
    for source in (tmp_path / name, data):
        start = time.perf_counter()
        try:
            assert load_image(source).mode == "RGB" and may_load
        except ImageError as err:
            assert not may_load and str(err).split(": ")[0] in (
                str(tmp_path / name),
                "uploaded image",
            )
        assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("name", sorted(AUDIO))
def test_bad_audio_in_a_manifest_and_through_the_loader(tmp_path, name):
    data = AUDIO[name]()
    (tmp_path / name).write_bytes(data)
    manifest = write(tmp_path, "m.csv", f"id,text,audio\n1,a sound,{name}\n")
    result = validate(manifest)
    assert_one_clear_error(result)
    assert "row 1, column 'audio'" in result.output
    for source, label in ((tmp_path / name, str(tmp_path / name)), (data, "uploaded audio")):
        start = time.perf_counter()
        with pytest.raises(AudioError, match=rf"^{label}: ") as caught:
            load_audio(source)
        assert " at 0x" not in str(caught.value) and "Error opening" not in str(caught.value)
        assert time.perf_counter() - start < 1.0


def test_the_corpus_is_at_least_forty_cases():
    assert len(MANIFESTS) + len(IMAGES) + len(AUDIO) >= 40


def test_a_split_that_is_not_there_names_the_splits(tmp_path):
    path = write(tmp_path, "m.csv", "id,text,split\n1,a,train\n2,b,test\n")
    with pytest.raises(ManifestError, match=r"no rows in split 'val' \(splits: test, train\)"):
        open_manifest(path).split("val")
