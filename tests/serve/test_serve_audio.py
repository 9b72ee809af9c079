"""Audio through the service: text → audio search, audio-clip queries, players on the page."""

import io

import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient

from jointspace.config import ModelConfig, TowerConfig
from jointspace.data import read_manifest
from jointspace.index.build import build_index
from jointspace.models.build import build_model
from jointspace.models.io import model_fingerprint
from jointspace.serve import create_app

TONES = (220, 330, 440, 660, 880, 1320)


@pytest.fixture(scope="module")
def audio_app(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("audio-serve")
    (root / "clips").mkdir()
    lines = ["id,audio,text,label"]
    for i, hz in enumerate(TONES):
        t = np.arange(6400) / 16_000
        soundfile.write(root / "clips" / f"{i}.wav", 0.4 * np.sin(2 * np.pi * hz * t), 16_000)
        lines.append(f"tone-{i},clips/{i}.wav,a {hz} hertz tone,{hz}")
    (root / "m.csv").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    text = TowerConfig("transformer", dict(width=16, depth=1, heads=2, max_len=8))
    audio = TowerConfig("audio_cnn", dict(seconds=0.5, n_mels=32, widths=[8, 16]))
    config = ModelConfig(embed_dim=8, towers={"text": text, "audio": audio})
    model = build_model(config, corpus=[line.split(",")[2] for line in lines[1:]])
    model.save(root / "model")
    manifest = read_manifest(root / "m.csv")
    uri = f"faiss://{root / 'index'}"
    build_index(
        model, model_fingerprint(root / "model"), manifest, "audio", uri, progress=False
    ).close()
    with TestClient(create_app(root / "model", uri, max_upload_bytes=50_000)) as client:
        yield client, root


def test_text_query_returns_playable_audio(audio_app):
    client, _ = audio_app
    body = client.post("/search", data={"text": "a 440 hertz tone", "k": "3"}).json()
    assert body["target"] == "audio" and body["query"] == "text" and len(body["results"]) == 3
    media = client.get(body["results"][0]["media"])
    assert media.status_code == 200 and media.headers["content-type"].startswith("audio/")
    assert soundfile.info(io.BytesIO(media.content)).samplerate == 16_000


def test_an_audio_clip_query_finds_itself(audio_app):
    client, root = audio_app
    files = {"audio": ("q.wav", (root / "clips" / "3.wav").read_bytes(), "audio/wav")}
    hits = client.post("/search", data={"k": "2"}, files=files).json()["results"]
    assert hits[0]["id"] == "tone-3" and hits[0]["score"] > 0.999


@pytest.mark.parametrize(
    ("files", "status", "message"),
    [
        ({"audio": ("a.txt", b"hello", "text/plain")}, 415, "must be an audio file"),
        ({"audio": ("a.wav", b"RIFF broken", "audio/wav")}, 422, "unreadable audio"),
        ({"audio": ("big.wav", bytes(60_000), "audio/wav")}, 413, "larger than 50000"),
        ({"image": ("a.png", b"\x89PNG broken", "image/png")}, 422, "no image tower"),
    ],
)
def test_bad_audio_uploads_are_clear_4xx(audio_app, files, status, message):
    client, _ = audio_app
    response = client.post("/search", data={"k": "2"}, files=files)
    assert response.status_code == status and message in response.text
    assert client.get("/health").json()["target"] == "audio"


def test_an_image_model_refuses_audio_queries(served_app, tmp_path):
    app, _ = served_app
    t = np.arange(1600) / 16_000
    soundfile.write(tmp_path / "q.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 16_000)
    files = {"audio": ("q.wav", (tmp_path / "q.wav").read_bytes(), "audio/wav")}
    response = TestClient(app).post("/search", data={"k": "2"}, files=files)
    assert response.status_code == 422 and "no audio tower" in response.text


def test_the_page_shows_audio_players(audio_app):
    from jointspace.serve.local import running_server, search_in_browser

    client, _ = audio_app
    with running_server(client.app) as url:
        hits = search_in_browser(url, "a 660 hertz tone")
    assert len(hits) == len(TONES)  # k = 12 on the page, six clips indexed
    assert all(h["audio"].startswith("/media/tone-") and h["width"] is None for h in hits)


def test_the_page_previews_an_uploaded_clip_and_searches_with_it(audio_app):
    from playwright.sync_api import sync_playwright

    from jointspace.report.browser import FLAGS, find_chromium
    from jointspace.serve.local import running_server

    client, root = audio_app
    clip = {"name": "3.wav", "mimeType": "audio/wav", "buffer": (root / "clips/3.wav").read_bytes()}
    with running_server(client.app) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=list(FLAGS))
        try:
            page = browser.new_page()
            page.goto(url)
            page.fill("#text", "a 440 hertz tone")
            page.set_input_files("#audio", clip)
            # A playable preview of the chosen clip replaces the typed text.
            page.wait_for_function("document.querySelector('#preview-media audio')?.duration > 0.3")
            assert page.input_value("#text") == "" and page.text_content("#preview-name") == "3.wav"
            with page.expect_response("**/search") as got:
                page.click("button[type=submit]")
            answer = got.value.json()
            page.wait_for_selector(".hit")
            ranks = page.eval_on_selector_all(".hit .rank", "rs => rs.map(r => r.textContent)")
        finally:
            browser.close()
    assert answer["query"] == "audio" and answer["results"][0]["id"] == "tone-3"
    assert ranks == [f"#{i}" for i in range(1, len(TONES) + 1)]
