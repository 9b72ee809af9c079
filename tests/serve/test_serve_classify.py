"""``POST /classify``: the service answers exactly what ``Classifier.predict`` does, refuses bad
requests with clear 4xx, and the page's form shows the API's label."""

import base64
import csv
import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import jointspace
from jointspace.classifier.config import ClassifyConfig
from jointspace.config import ModelConfig, PartConfig, TowerConfig
from jointspace.errors import NotFoundError
from jointspace.serve import create_app
from jointspace.serve.local import running_server

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
WORDS = ["bright", "dark", "small", "big"]
TAKES = "this classifier takes image, text; not audio"


def colour_png(name: str, jitter: int = 0) -> bytes:
    pixels = np.clip(np.array(COLOURS[name]) + jitter, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.tile(pixels, (16, 16, 1))).save(buffer, format="PNG")
    return buffer.getvalue()


def colour_manifest(root) -> str:
    """Solid-colour images, a word or two of text; the label is the image's colour."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    for n in range(60):
        label = list(COLOURS)[n % 3]
        name = f"images/{n:03d}.png"
        (root / name).write_bytes(colour_png(label, int(rng.integers(-20, 21))))
        text = f"a {rng.choice(WORDS)} {label if n % 2 else 'thing'}"
        split = "train" if n < 42 else "val" if n < 51 else "test"
        rows.append({"id": f"r{n}", "image": name, "text": text, "label": label, "split": split})
    path = root / "labels.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    """A concat-fusion classifier over tiny random text and image towers (seconds to train)."""
    from jointspace.runs.classify import classify

    root = tmp_path_factory.mktemp("classify")
    config = ClassifyConfig()
    config.data.manifest = colour_manifest(root)
    config.towers.model = ModelConfig(
        embed_dim=8,
        towers={
            "text": TowerConfig("transformer", dict(width=16, depth=1, heads=2, max_len=8)),
            "image": TowerConfig("cnn", dict(image_size=16, widths=[8, 16])),
        },
    )
    config.head = PartConfig("concat", {"width": 16})
    config.train.epochs, config.train.batch_size, config.train.progress = 3, 16, False
    classify(config, root / "run")
    return root / "run"


@pytest.fixture(scope="module")
def app(served_app, classifier_dir):
    base, _ = served_app
    return create_app(
        base.state.model_dir,
        base.state.index_uri,
        max_upload_bytes=50_000,
        classifier=classifier_dir,
    )


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as client:
        yield client


def png_upload(name="red", kind="image/png", data=None):
    return {"image": ("q.png", colour_png(name) if data is None else data, kind)}


def expected(app, inputs, top_k=5) -> dict:
    """What the classifier itself answers, in the service's shape."""
    classifier = app.state.classifier
    found = classifier.predict(inputs, top_k=top_k)
    return {
        "label": found.label,
        "scores": [{"label": label, "score": score} for label, score in found.scores],
        "used": list(found.used),
        "classifier": classifier.fingerprint,
    }


def test_health_lists_what_the_classifier_takes(client, served_app):
    assert sorted(client.get("/health").json()["classify"]) == ["image", "text"]
    with TestClient(served_app[0]) as plain:
        assert plain.get("/health").json()["classify"] == []


def test_a_form_answers_exactly_as_predict(app, client):
    image = Image.open(io.BytesIO(colour_png("green"))).convert("RGB")
    response = client.post(
        "/classify", data={"text": "a dark green", "top_k": "2"}, files=png_upload("green")
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer == expected(app, {"text": "a dark green", "image": image}, top_k=2)
    assert sorted(answer["used"]) == ["image", "text"] and len(answer["scores"]) == 2
    assert answer["label"] == answer["scores"][0]["label"]
    assert answer["scores"][0]["score"] >= answer["scores"][1]["score"]


def test_a_json_body_answers_like_the_form(app, client):
    data = colour_png("blue")
    body = {"text": "a small thing", "image": base64.b64encode(data).decode()}
    answer = client.post("/classify", json=body).json()
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert answer == expected(app, {"text": "a small thing", "image": image})
    form = client.post("/classify", data={"text": "a small thing"}, files=png_upload("blue"))
    assert form.json() == answer
    assert sum(s["score"] for s in answer["scores"]) == pytest.approx(1.0, abs=1e-5)  # 3 classes


def test_a_missing_modality_answers_from_the_others(app, client):
    text_only = client.post("/classify", data={"text": "a bright red"}).json()
    assert text_only == expected(app, {"text": "a bright red"})
    assert text_only["used"] == ["text"]
    image_only = client.post("/classify", files=png_upload("red")).json()
    image = Image.open(io.BytesIO(colour_png("red"))).convert("RGB")
    assert image_only == expected(app, {"image": image}) and image_only["used"] == ["image"]


def test_top_k_past_the_classes_gives_every_class(client):
    answer = client.post("/classify", json={"text": "a red", "top_k": 100}).json()
    assert sorted(s["label"] for s in answer["scores"]) == ["blue", "green", "red"]


def wav_upload():
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(1600, np.float32), 16_000, format="WAV")
    return {"audio": ("q.wav", buffer.getvalue(), "audio/wav")}


@pytest.mark.parametrize(
    ("data", "files", "status", "message"),
    [
        ({}, None, 400, "give at least one input"),
        ({"text": "   "}, None, 400, "give at least one input"),
        ({"text": "red"}, wav_upload(), 422, TAKES),
        ({}, wav_upload(), 422, TAKES),
        ({"text": "red", "top_k": "0"}, None, 422, "greater than or equal to 1"),
        ({"text": "red", "top_k": "101"}, None, 422, "less than or equal to 100"),
        ({"text": "red", "top_k": "many"}, None, 422, "valid integer"),
        ({"text": "red", "k": "3"}, None, 422, "Extra inputs are not permitted"),
        ({}, png_upload(kind="text/plain"), 415, "must be an image"),
        ({}, png_upload(data=b"\x89PNG broken"), 422, "unreadable image upload 'q.png'"),
        ({}, png_upload(data=bytes(60_000)), 413, "larger than 50000"),
    ],
)
def test_bad_requests_get_clear_4xx(client, data, files, status, message):
    response = client.post("/classify", data=data, files=files)
    assert response.status_code == status, response.text
    assert message in response.text
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "give at least one input"),
        ({"image": "not base64!"}, 422, "'image' is not valid base64"),
        ({"text": "red", "top_k": -1}, 422, "greater than or equal to 1"),
        ([1, 2], 422, 'must be an object, e.g. {"text": "is it even?"}'),
    ],
)
def test_json_bodies_are_checked_like_forms(client, body, status, message):
    response = client.post("/classify", json=body)
    assert response.status_code == status and message in str(response.json()), response.text


def test_an_unknown_body_type_is_415(client):
    response = client.post("/classify", content=b"red", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "send the classification as" in response.text


def test_without_a_classifier_classify_is_404_saying_how(served_app):
    with TestClient(served_app[0]) as plain:
        response = plain.post("/classify", data={"text": "red"})
    assert response.status_code == 404 and "--classifier" in response.json()["detail"]


def test_a_missing_classifier_fails_at_start(served_app, tmp_path):
    base, _ = served_app
    with pytest.raises(NotFoundError, match="no classifier at"):
        create_app(base.state.model_dir, base.state.index_uri, classifier=tmp_path / "none")


def test_serve_with_a_missing_classifier_is_one_error_line(served_app, tmp_path):
    import subprocess
    import sys

    base, _ = served_app
    command = [sys.executable, "-m", "jointspace.cli", "serve", str(base.state.model_dir)]
    command += ["--index", base.state.index_uri, "--port", "0"]
    command += ["--classifier", str(tmp_path / "none")]
    src = str(Path(jointspace.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output and "serving" not in output
    assert output.strip() == f"error: no classifier at {tmp_path / 'none'} (not a directory)"


def test_classifications_and_searches_share_max_pending(served_app, classifier_dir):
    base, _ = served_app
    app = create_app(
        base.state.model_dir,
        base.state.index_uri,
        workers=1,
        max_pending=1,
        classifier=classifier_dir,
    )
    real_predict, gate = app.state.classifier.predict, threading.Event()

    def held_predict(*args, **kwargs):
        gate.wait(10)
        return real_predict(*args, **kwargs)

    app.state.classifier.predict = held_predict
    with running_server(app) as url, ThreadPoolExecutor(2) as pool:
        held = pool.submit(httpx.post, f"{url}/classify", data={"text": "red"}, timeout=30)
        time.sleep(0.3)
        refused = httpx.post(f"{url}/classify", data={"text": "red"})
        search = httpx.post(f"{url}/search", data={"text": "a 3"})
        gate.set()
        first = held.result()
    assert refused.status_code == 503 and "too many requests" in refused.json()["detail"]
    assert search.status_code == 503  # the same queue
    assert first.status_code == 200 and first.json()["used"] == ["text"]


def test_no_generated_classify_request_makes_a_server_error(app):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = schema["/classify"]["POST"]
    fuzz = settings(
        max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )

    @fuzz
    @given(case=operation.as_strategy())
    def check(case):
        case.call_and_validate(checks=[not_a_server_error])

    check()


def test_the_page_classifies_and_shows_the_apis_label(app, client):
    from playwright.sync_api import sync_playwright

    from jointspace.report.browser import FLAGS, find_chromium

    image = {"name": "q.png", "mimeType": "image/png", "buffer": colour_png("blue")}
    with running_server(app) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=list(FLAGS))
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector("#classify-box:not([hidden])")
            assert page.is_hidden("#classify-audio-box")  # the classifier takes no audio
            page.fill("#classify-text", "a big blue")
            page.set_input_files("#classify-image", image)
            page.fill("#classify-top", "2")
            with page.expect_response("**/classify") as got:
                page.click("#classify-submit")
            answer = got.value.json()
            page.wait_for_selector("#classify-answer:not([hidden])")
            shown = page.text_content("#classify-label")
            rows = page.eval_on_selector_all("#classify-scores tr", "r => r.map(x => x.innerText)")
        finally:
            browser.close()
    direct = client.post(
        "/classify", data={"text": "a big blue", "top_k": "2"}, files=png_upload("blue")
    ).json()
    assert answer == direct and shown == direct["label"]
    assert rows == [f"{s['label']}\t{s['score']:.3f}" for s in direct["scores"]]


def test_the_page_hides_the_form_without_a_classifier(served_app):
    from playwright.sync_api import sync_playwright

    from jointspace.report.browser import FLAGS, find_chromium

    with running_server(served_app[0]) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=list(FLAGS))
        try:
            page = browser.new_page()
            with page.expect_response("**/health"):
                page.goto(url)
            page.wait_for_timeout(200)  # the health answer's handler has run
            assert page.is_hidden("#classify-box")
        finally:
            browser.close()
