"""Bad API payloads and uploads: each a 4xx with a clear one-line message, never a 5xx."""

import base64
import io
import json
import struct
import zlib

import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient
from PIL import Image


@pytest.fixture(scope="module")
def client(served_app):
    app, _ = served_app  # a digits image index; uploads are limited to 50,000 bytes
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def png_bytes(width=16, height=16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (0, 90, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` but holds a few zero rows."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(bytes(1 + width) * 4)

    def chunk(kind, body):
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)


def wav_bytes(rate=16_000) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(1600, np.float32), rate, format="WAV")
    return buffer.getvalue()


PNG, JPEG, WAV = png_bytes(), jpeg_bytes(), wav_bytes()
B64 = base64.b64encode(PNG).decode()
TEXT = {"text": "a handwritten seven"}
JSON = {"content-type": "application/json"}

# name → (keyword arguments of client.post("/search", …), expected status, text in the message)
CASES = {
    # form fields
    "no query at all": (dict(data={}), 400, "exactly one query"),
    "blank text": (dict(data={"text": "   "}), 400, "exactly one query"),
    "text and image": (
        dict(data=TEXT, files={"image": ("a.png", PNG, "image/png")}),
        400,
        "exactly one query",
    ),
    "text over 1000 chars": (dict(data={"text": "x" * 1001}), 422, "at most 1000 characters"),
    "k zero": (dict(data={**TEXT, "k": "0"}), 422, "greater than or equal to 1"),
    "k 101": (dict(data={**TEXT, "k": "101"}), 422, "less than or equal to 100"),
    "k negative": (dict(data={**TEXT, "k": "-3"}), 422, "greater than or equal to 1"),
    "k a word": (dict(data={**TEXT, "k": "many"}), 422, "valid integer"),
    "k a float": (dict(data={**TEXT, "k": "2.5"}), 422, "valid integer"),
    "k 30 digits": (dict(data={**TEXT, "k": "9" * 30}), 422, "less than or equal to 100"),
    "rerank negative": (dict(data={**TEXT, "rerank": "-1"}), 422, "greater than or equal to 0"),
    "rerank without a matcher": (dict(data={**TEXT, "rerank": "5"}), 422, "no re-ranker"),
    "unknown form field": (dict(data={**TEXT, "colour": "red"}), 422, "Extra inputs"),
    "image as a text field": (dict(data={"image": "cat.png"}), 422, "must be a file upload"),
    "text as a file": (
        dict(files={"text": ("t.txt", b"seven", "text/plain")}),
        422,
        "must be a text field",
    ),
    "three files": (
        dict(files=[("image", ("a.png", PNG, "image/png"))] * 3),
        400,
        "Too many files",
    ),
    # filters
    "filter with >": (dict(data={**TEXT, "filter": "label > 3"}), 422, "use field == value"),
    "filter not an expression": (dict(data={**TEXT, "filter": "((("}), 422, "not an expression"),
    "filter with a NUL byte": (
        dict(json={**TEXT, "filter": "label == 1\x00"}),
        422,
        "not an expression",
    ),
    "filter 300 parentheses deep": (
        dict(json={**TEXT, "filter": "label == " + "(" * 300 + "1" + ")" * 300}),
        422,
        "not an expression",
    ),
    "filter with None": (dict(json={**TEXT, "filter": "label == None"}), 422, "quoted strings"),
    "filter calling code": (
        dict(data={**TEXT, "filter": "__import__('os').system('true')"}),
        422,
        "use field == value",
    ),
    "filter over 1000 chars": (
        dict(data={**TEXT, "filter": "label == 1 or " * 80 + "label == 2"}),
        422,
        "at most 1000 characters",
    ),
    "filter comparing two fields": (
        dict(data={**TEXT, "filter": "label == split"}),
        422,
        "filter",
    ),
    "filter with a huge integer": (
        dict(data={**TEXT, "filter": "label == " + "9" * 23}),
        422,
        "filter",
    ),
    "filter on an unknown field": (
        dict(data={**TEXT, "filter": 'colour == "red"'}),
        422,
        "colour",
    ),
    # uploads
    "image of type text/plain": (
        dict(files={"image": ("a.txt", b"hello", "text/plain")}),
        415,
        "must be an image file",
    ),
    "image as octet-stream": (
        dict(files={"image": ("a.png", PNG, "application/octet-stream")}),
        415,
        "must be an image file",
    ),
    "empty image file": (
        dict(files={"image": ("a.png", b"", "image/png")}),
        422,
        "unreadable image upload 'a.png'",
    ),
    "corrupt png": (
        dict(files={"image": ("a.png", PNG[:40] + bytes(30), "image/png")}),
        422,
        "unreadable image upload 'a.png'",
    ),
    "truncated jpeg": (
        dict(files={"image": ("a.jpg", JPEG[: len(JPEG) // 2], "image/jpeg")}),
        422,
        "unreadable image upload 'a.jpg'",
    ),
    "wav sent as an image": (
        dict(files={"image": ("a.png", WAV, "image/png")}),
        422,
        "unreadable image upload",
    ),
    "1x20000 sliver": (
        dict(files={"image": ("s.png", png_header_only(1, 20_000), "image/png")}),
        422,
        "sides may differ",
    ),
    "40000x40000 header": (
        dict(files={"image": ("b.png", png_header_only(40_000, 40_000), "image/png")}),
        413,
        "limit",
    ),
    "png with a bad checksum": (
        dict(files={"image": ("c.png", PNG[:20] + b"\xff" + PNG[21:], "image/png")}),
        422,
        "unreadable image upload 'c.png'",
    ),
    "upload over 50,000 bytes": (
        dict(files={"image": ("big.png", bytes(60_000), "image/png")}),
        413,
        "larger than 50000 bytes",
    ),
    "audio to an image-only model": (
        dict(files={"audio": ("a.wav", WAV, "audio/wav")}),
        422,
        "no audio tower",
    ),
    # JSON bodies
    "json not json": (
        dict(content=b"{", headers={"content-type": "application/json"}),
        422,
        "not valid JSON",
    ),
    "json a list": (dict(json=["a cat"]), 422, "must be an object"),
    "json a string": (dict(json="a cat"), 422, "must be an object"),
    "json nested 100000 deep": (
        dict(content=b"[" * 100_000, headers=JSON),
        422,
        "nested too deeply",
    ),
    "json not utf-8": (
        dict(content=b'{"text": "\xff\xfe"}', headers=JSON),
        422,
        "not valid JSON",
    ),
    "json k a string": (dict(json={**TEXT, "k": "many"}), 422, "valid integer"),
    "json k a float": (dict(json={**TEXT, "k": 2.5}), 422, "valid integer"),
    "json k a list": (dict(json={**TEXT, "k": [5]}), 422, "valid integer"),
    "json text a number": (dict(json={"text": 7}), 422, "valid string"),
    "json text a lone surrogate": (
        dict(content=b'{"text": "\\ud800"}', headers=JSON),
        422,
        "valid string",
    ),
    "json text null only": (dict(json={"text": None}), 400, "exactly one query"),
    "json unknown field": (dict(json={**TEXT, "colour": "red"}), 422, "Extra inputs"),
    "json image not base64": (dict(json={"image": "!!not base64!!"}), 422, "not valid base64"),
    "json image a number": (dict(json={"image": 12}), 422, "base64 string"),
    "json image of garbage": (
        dict(json={"image": base64.b64encode(b"garbage").decode()}),
        422,
        "unreadable image upload",
    ),
    "json text and image": (dict(json={**TEXT, "image": B64}), 400, "exactly one query"),
    # content types
    "plain-text body": (
        dict(content=b"text=seven", headers={"content-type": "text/plain"}),
        415,
        "send the search as",
    ),
    "body without a content type": (dict(content=b"text=seven"), 415, "send the search as"),
    "multipart without a boundary": (
        dict(content=b"--x\r\n", headers={"content-type": "multipart/form-data"}),
        400,
        "boundary",
    ),
    "declared 2 GB body": (
        dict(
            content=b"{}",
            headers={"content-type": "application/json", "content-length": str(2**31)},
        ),
        413,
        "request body larger than the limit",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_search_requests_are_clear_4xx(client, name):
    request, status, message = CASES[name]
    response = client.post("/search", **request)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    text = detail if isinstance(detail, str) else "; ".join(d["msg"] for d in detail)
    assert message in text
    assert "Traceback" not in text and "object at 0x" not in text and "\n" not in text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/items/..%2F..%2Fetc%2Fpasswd", 404),
        ("GET", "/media/..%2F..%2Fetc%2Fpasswd", 404),
        ("GET", "/media/%2Fetc%2Fpasswd", 404),
        ("GET", "/media/nope", 404),
        ("GET", "/items/" + "x" * 5000, 404),
        ("GET", "/search", 405),
        ("DELETE", "/items/0000-0", 405),
        ("GET", "/docs-assets/..%2F..%2Fapp.py", 404),
    ],
)
def test_bad_paths_are_4xx(client, method, path, status):
    response = client.request(method, path)
    assert response.status_code == status
    assert "Traceback" not in response.text


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30
    json.dumps(list(CASES))  # names are plain strings for the report
