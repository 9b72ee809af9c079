"""Denial of service: request bodies cut off while streaming, bombs refused from their headers,
health answered at once while searches run."""

import asyncio
import io
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient
from PIL import Image

from jointspace.serve import create_app
from jointspace.serve.local import running_server

CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def big(served_app):
    """The app with the default 10 MB upload limit, so bombs get past the byte limit."""
    app, _ = served_app
    with TestClient(create_app(app.state.model_dir, app.state.index_uri)) as client:
        yield client


def png(width: int, height: int) -> bytes:
    """A valid grey PNG of any size, written row by row so a bomb never exists decoded."""
    squeeze = zlib.compressobj(9)
    row = bytes(1 + width)  # filter byte 0, then zeros
    parts = [squeeze.compress(row * min(height, 256)) for _ in range(height // 256)]
    parts += [squeeze.compress(row * (height % 256)), squeeze.flush()]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def wav(rate: int = 16_000, seconds: float = 0.5, fmt: str = "WAV", subtype=None) -> bytes:
    buffer = io.BytesIO()
    t = np.arange(int(rate * seconds)) / rate
    soundfile.write(buffer, 0.3 * np.sin(2 * np.pi * 440 * t), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def with_rate(data: bytes, rate: int) -> bytes:
    """A WAV whose header claims another sample rate (bytes 24–31: rate and byte rate)."""
    return data[:24] + struct.pack("<II", rate, min(rate * 2, 2**32 - 1)) + data[32:]


def image_file(data: bytes, name="q.png", kind="image/png"):
    return {"image": (name, data, kind)}


def audio_file(data: bytes, name="q.flac", kind="audio/flac"):
    return {"audio": (name, data, kind)}


def real_png(size=(64, 64)) -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (*size, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bomb_20k():
    return png(20_000, 20_000)


def test_the_png_bomb_is_small(bomb_20k):
    assert len(bomb_20k) < 1_000_000  # 400 M pixels in well under a megabyte


@pytest.mark.parametrize(
    ("make", "status", "message"),
    [
        (lambda: png(1, 20_000), 422, "1×20000 pixels; the sides may differ at most 20-fold"),
        (lambda: png(20_000, 1), 422, "sides may differ"),
        (lambda: png(10_000, 10_000), 413, "limit of 16000000"),  # in Pillow's warning zone
        (lambda: png(5_000, 4_000), 413, "5000×4000 pixels is over the limit"),
        (lambda: real_png()[:60], 422, "unreadable image upload 'q.png'"),  # truncated
        (lambda: real_png()[:6000], 422, "unreadable image upload 'q.png'"),  # cut in IDAT
        (lambda: b"", 400, "exactly one query"),  # an empty, nameless part is no upload
        (lambda: b"GIF89a" + bytes(20), 422, "unreadable image upload"),
    ],
)
def test_image_bombs_and_slivers_are_refused_fast(big, make, status, message):
    data = make()
    started = time.perf_counter()
    response = big.post("/search", files=image_file(data, name="" if not data else "q.png"))
    assert time.perf_counter() - started < 2
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_the_20000_square_png_bomb_is_413(big, bomb_20k):
    started = time.perf_counter()
    response = big.post("/search", files=image_file(bomb_20k, name="bomb.png"))
    assert time.perf_counter() - started < 2
    assert response.status_code == 413 and "'bomb.png'" in response.json()["detail"]


@pytest.mark.parametrize(
    ("make", "status", "message"),
    [
        (lambda: wav(16_000, 700, "FLAC"), 413, "700 s long; the limit is 60 s"),  # FLAC bomb
        (lambda: with_rate(wav(), 3_000_000_000), 422, "unreadable audio upload"),
        (lambda: with_rate(wav(), 7), 422, "sample rate 7 Hz is outside"),
        (lambda: with_rate(wav(), 192_001), 422, "sample rate 192001 Hz is outside 4000–192000 Hz"),
        (lambda: wav()[:44], 422, "no samples"),
        (lambda: wav()[:30], 422, "unreadable audio upload 'q.flac'"),
        (lambda: wav(fmt="FLAC")[:40], 422, "unreadable audio upload"),
        (lambda: b"fLaC" + bytes(100), 422, "not a WAV, FLAC or OGG file"),
    ],
)
def test_audio_bombs_and_odd_rates_are_refused_fast(audio_served, make, status, message):
    data = make()
    started = time.perf_counter()
    response = audio_served.post("/search", files=audio_file(data))
    assert time.perf_counter() - started < 2
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert "object at 0x" not in response.text


@pytest.fixture(scope="module")
def audio_served(tmp_path_factory):
    """A tiny text+audio model over three tone clips, with the default upload limit."""
    from jointspace.config import ModelConfig, TowerConfig
    from jointspace.data import read_manifest
    from jointspace.index.build import build_index
    from jointspace.models.build import build_model
    from jointspace.models.io import model_fingerprint

    torch = pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("audio-limits")
    lines = ["id,audio,text"]
    for i in range(3):
        (root / f"{i}.wav").write_bytes(wav(16_000, 0.4))
        lines.append(f"t{i},{i}.wav,tone {i}")
    (root / "m.csv").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    text = TowerConfig("transformer", dict(width=16, depth=1, heads=2, max_len=8))
    audio = TowerConfig("audio_cnn", dict(seconds=0.5, n_mels=16, widths=[8]))
    model = build_model(
        ModelConfig(embed_dim=8, towers={"text": text, "audio": audio}), corpus=["tone"]
    )
    model.save(root / "model")
    uri = f"faiss://{root / 'index'}"
    manifest = read_manifest(root / "m.csv")
    build_index(
        model, model_fingerprint(root / "model"), manifest, "audio", uri, progress=False
    ).close()
    with TestClient(create_app(root / "model", uri)) as client:
        yield client


def test_a_good_clip_still_answers(audio_served):
    response = audio_served.post("/search", files=audio_file(wav(44_100, 1.0, "FLAC")))
    assert response.status_code == 200 and len(response.json()["results"]) == 3


def call_asgi(app, headers, chunks):
    """Run one POST /search through the raw ASGI app; its status and the bytes it read."""
    sent, read = [], 0

    async def receive():
        nonlocal read
        try:
            body = next(chunks)
        except StopIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        read += len(body)
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/search",
        "raw_path": b"/search",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], read


def endless(total=2 * 1024**3):
    """Up to 2 GB of multipart-looking bytes, made only as they are read."""
    yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
    yield b"Content-Type: image/png\r\n\r\n"
    for _ in range(total // CHUNK):
        yield bytes(CHUNK)


def test_a_streamed_body_is_cut_off_at_the_limit(served_app):
    app, _ = served_app  # 50,000-byte uploads: the body limit is that plus 64 KiB
    started = time.perf_counter()
    status, read = call_asgi(
        app, [(b"content-type", b"multipart/form-data; boundary=b")], endless()
    )
    assert status == 413 and read < 50_000 + 2 * CHUNK + CHUNK
    assert time.perf_counter() - started < 2


def test_a_declared_oversize_body_is_refused_before_reading(served_app):
    app, _ = served_app
    headers = [
        (b"content-type", b"multipart/form-data; boundary=b"),
        (b"content-length", str(2 * 1024**3).encode()),
    ]
    assert call_asgi(app, headers, endless()) == (413, 0)
    bad = [(b"content-type", b"application/json"), (b"content-length", b"12x")]
    assert call_asgi(app, bad, iter([b"{}"])) == (413, 0)


def test_a_streamed_upload_over_http_gets_413_quickly(served_app):
    app, _ = served_app
    read = 0

    def body():
        nonlocal read
        for chunk in endless():
            read += len(chunk)
            yield chunk

    headers = {"content-type": "multipart/form-data; boundary=b"}
    with running_server(app) as url:
        started = time.perf_counter()
        response = httpx.post(f"{url}/search", content=body(), headers=headers)
        took = time.perf_counter() - started
    # The server answered and closed after ~limit bytes; what the client wrote more sat in
    # socket buffers. (Before, it spooled the whole body to disk first: 81 s for 2 GB.)
    assert response.status_code == 413 and "larger than the limit" in response.text
    assert took < 2 and read < 16 * 1024 * 1024


def test_health_answers_at_once_while_searches_are_slow(served_app):
    app, _ = served_app
    app = create_app(app.state.model_dir, app.state.index_uri, workers=24)
    real_encode = app.state.model.encode

    def slow_encode(*args, **kwargs):
        time.sleep(2.0)
        return real_encode(*args, **kwargs)

    app.state.model.encode = slow_encode
    with running_server(app) as url, ThreadPoolExecutor(48) as pool:
        searches = [
            pool.submit(httpx.post, f"{url}/search", data={"text": "a 3"}, timeout=60)
            for _ in range(48)
        ]
        time.sleep(0.5)  # every search is now running or queued behind the slow model
        waits = []
        for _ in range(5):
            started = time.perf_counter()
            assert httpx.get(f"{url}/health").json()["status"] == "ok"
            waits.append(time.perf_counter() - started)
        statuses = [s.result().status_code for s in searches]
    assert max(waits) < 0.5, waits  # a search takes 2 s: health did not queue behind them
    assert statuses == [200] * 48


def test_past_max_pending_searches_get_503(served_app):
    app, _ = served_app
    app = create_app(app.state.model_dir, app.state.index_uri, workers=1, max_pending=2)
    real_encode = app.state.model.encode
    gate = threading.Event()

    def held_encode(*args, **kwargs):
        gate.wait(10)
        return real_encode(*args, **kwargs)

    app.state.model.encode = held_encode
    with running_server(app) as url, ThreadPoolExecutor(4) as pool:
        searches = [pool.submit(httpx.post, f"{url}/search", data={"text": "a"}) for _ in range(2)]
        time.sleep(0.3)
        refused = httpx.post(f"{url}/search", data={"text": "a"})
        gate.set()
        statuses = [s.result().status_code for s in searches]
    assert refused.status_code == 503 and "too many searches" in refused.json()["detail"]
    assert statuses == [200, 200]
