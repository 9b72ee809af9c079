import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image


@pytest.fixture(scope="module")
def served(served_app):
    app, manifest = served_app
    with TestClient(app) as client:
        yield client, manifest


def png_bytes(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_health_page_and_openapi(served):
    client, manifest = served
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["target"] == "image"
    assert health["items"] == len(set(manifest.column("image")))
    assert '<form id="search">' in client.get("/").text
    assert "/search" in client.get("/openapi.json").json()["paths"]


def test_text_search_returns_sorted_hits_with_media(served):
    client, _ = served
    response = client.post("/search", data={"text": "a handwritten seven", "k": "5"})
    assert response.status_code == 200
    body = response.json()
    scores = [r["score"] for r in body["results"]]
    assert body["query"] == "text" and len(scores) == 5 and scores == sorted(scores, reverse=True)
    first = body["results"][0]
    media = client.get(first["media"])
    assert media.status_code == 200 and media.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(media.content)).size == (8, 8)
    item = client.get(f"/items/{first['id']}").json()
    assert item["metadata"] == first["metadata"] and item["media"] == first["media"]


def test_image_query_finds_itself_and_filters_apply(served):
    client, manifest = served
    row = manifest.split("test").rows[0]
    data = manifest.resolve(row["image"]).read_bytes()
    files = {"image": ("q.png", data, "image/png")}
    hits = client.post("/search", data={"k": "3"}, files=files).json()["results"]
    assert hits[0]["metadata"]["image"] == row["image"] and hits[0]["score"] > 0.999
    filtered = client.post(
        "/search", data={"text": "the digit 3", "k": "4", "filter": 'split == "val"'}
    ).json()["results"]
    assert len(filtered) == 4 and {h["metadata"]["split"] for h in filtered} == {"val"}


@pytest.mark.parametrize(
    ("data", "files", "status", "message"),
    [
        ({}, None, 400, "exactly one query"),
        ({"text": "   "}, None, 400, "exactly one query"),
        ({"text": "seven"}, {"image": ("a.png", b"x", "image/png")}, 400, "exactly one query"),
        ({"text": "seven", "k": "0"}, None, 422, "greater than or equal to 1"),
        ({"text": "seven", "k": "101"}, None, 422, "less than or equal to 100"),
        ({"text": "seven", "k": "many"}, None, 422, "valid integer"),
        ({"text": "seven", "filter": "label > 3"}, None, 422, "use field == value"),
        ({}, {"image": ("a.txt", b"hello", "text/plain")}, 415, "must be an image"),
        ({}, {"image": ("a.png", b"\x89PNG broken", "image/png")}, 422, "unreadable image"),
        ({}, {"image": ("big.png", bytes(60_000), "image/png")}, 413, "larger than 50000"),
    ],
)
def test_bad_requests_get_clear_4xx_and_the_service_stays_up(served, data, files, status, message):
    client, _ = served
    response = client.post("/search", data=data, files=files)
    assert response.status_code == status, response.text
    assert message in response.text
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("item_id", ["nope", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"])
def test_unknown_ids_and_paths_are_404(served, item_id):
    client, _ = served
    assert client.get(f"/items/{item_id}").status_code == 404
    assert client.get(f"/media/{item_id}").status_code == 404


def test_noise_image_query_still_answers(served):
    client, _ = served
    noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)
    files = {"image": ("n.png", png_bytes(noise), "image/png")}
    assert len(client.post("/search", data={"k": "2"}, files=files).json()["results"]) == 2


def test_search_page_in_headless_chromium(served, tmp_path):
    from jointspace.serve.local import running_server, search_in_browser

    client, _ = served
    with running_server(client.app) as url:
        assert client.get("/health").status_code == 200
        hits = search_in_browser(url, "a handwritten seven", tmp_path / "page.png")
    assert len(hits) == 12  # the page asks for k = 12
    assert all(h["width"] == 8 for h in hits)  # every result image loaded (8×8 digits)
    assert all(h["caption"].count("·") == 1 for h in hits)  # "label · score"
    shot = np.asarray(Image.open(tmp_path / "page.png").convert("L"), dtype=float)
    assert shot.shape[1] == 1100 and shot.std() > 10
