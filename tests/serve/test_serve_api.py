"""The REST API: JSON bodies, offline /docs, error mapping, NaN models, ids holding '/'."""

import base64
import re

import pytest
import torch
from fastapi.testclient import TestClient

from jointspace.errors import ArtifactError
from jointspace.serve import create_app


@pytest.fixture(scope="module")
def client(served_app):
    app, manifest = served_app
    with TestClient(app) as client:
        yield client, manifest


def test_a_json_body_searches_like_the_form(client):
    client, _ = client
    form = client.post("/search", data={"text": "a handwritten seven", "k": "4"}).json()
    body = client.post("/search", json={"text": "a handwritten seven", "k": 4})
    assert body.status_code == 200, body.text
    assert body.json() == form and [r["rank"] for r in form["results"]] == [1, 2, 3, 4]
    filtered = client.post("/search", json={"text": "a 3", "k": 3, "filter": 'split == "val"'})
    assert {r["metadata"]["split"] for r in filtered.json()["results"]} == {"val"}


def test_a_json_body_carries_a_base64_image(client):
    client, manifest = client
    row = manifest.split("test").rows[0]
    data = base64.b64encode(manifest.resolve(row["image"]).read_bytes()).decode()
    hits = client.post("/search", json={"image": data, "k": 2}).json()["results"]
    assert hits[0]["metadata"]["image"] == row["image"] and hits[0]["score"] > 0.999


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": "seven", "k": 0}, "greater than or equal to 1"),
        ({"text": "seven", "k": "many"}, "valid integer"),
        ({"text": "seven", "colour": "red"}, "Extra inputs are not permitted"),
        ({}, "exactly one query"),
        ({"text": "seven", "image": "aGVsbG8="}, "exactly one query"),
    ],
)
def test_json_bodies_are_validated_like_forms(client, body, message):
    client, _ = client
    response = client.post("/search", json=body)
    assert 400 <= response.status_code < 500 and message in response.text


def test_openapi_documents_json_and_multipart_bodies(client):
    client, _ = client
    body = client.get("/openapi.json").json()["paths"]["/search"]["post"]["requestBody"]
    content = body["content"]
    assert {"application/json", "multipart/form-data"} <= set(content)
    assert content["application/json"]["schema"]["properties"]["k"]["maximum"] == 100
    assert content["multipart/form-data"]["schema"]["properties"]["image"]


def test_docs_load_nothing_from_outside(client):
    client, _ = client
    html = client.get("/docs").text
    urls = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', html)
    assert len(urls) >= 3  # the bundle, its stylesheet and the icon
    for url in urls:
        assert url.startswith("/"), url
        assert client.get(url).status_code == 200, url
    assert client.get("/redoc").status_code == 404  # would load from a CDN: not offered


def test_a_corrupt_upload_names_the_file_not_a_python_repr(client):
    client, _ = client
    files = {"image": ("holiday.png", b"\x89PNG\r\n\x1a\n broken", "image/png")}
    response = client.post("/search", files=files)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "'holiday.png'" in detail and "object at 0x" not in detail and "BytesIO" not in detail


def test_filter_errors_are_422_with_the_message(client):
    client, _ = client
    response = client.post("/search", data={"text": "a 3", "filter": "label > 3"})
    assert response.status_code == 422 and "use field == value" in response.json()["detail"]


def test_a_huge_integer_in_a_filter_is_a_4xx(client):
    client, _ = client
    response = client.post("/search", data={"text": "a 3", "filter": "label == " + "9" * 23})
    assert 400 <= response.status_code < 500, response.text


def test_a_damaged_artifact_at_search_time_is_503_not_a_traceback(served_app, monkeypatch):
    app, _ = served_app

    def broken(*args, **kwargs):
        raise ArtifactError("index.faiss: truncated")

    monkeypatch.setattr(app.state.index, "search", broken)
    response = TestClient(app).post("/search", data={"text": "a 3"})
    assert response.status_code == 503 and response.json()["detail"] == "index.faiss: truncated"


def fresh_app(served_app, **options):
    app, _ = served_app
    return create_app(app.state.model_dir, app.state.index_uri, **options)


def test_nan_weights_make_search_503_and_health_not_ok(served_app):
    app = fresh_app(served_app)
    client = TestClient(app)
    assert client.get("/health").json()["status"] == "ok"
    with torch.no_grad():
        for parameter in app.state.model.parameters():
            parameter.fill_(float("nan"))
    response = client.post("/search", data={"text": "a 3"})
    assert response.status_code == 503 and "non-finite embeddings" in response.json()["detail"]
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "error"
    assert "text tower produces non-finite" in health.json()["problem"]


def test_a_model_with_nan_weights_is_not_healthy_from_the_start(served_app, monkeypatch):
    import jointspace.runs.run as run_module

    real_load = run_module.load_model

    def poisoned(directory):
        model = real_load(directory)
        with torch.no_grad():
            next(model.tower("image").parameters()).fill_(float("nan"))
        return model

    monkeypatch.setattr(run_module, "load_model", poisoned)
    health = TestClient(fresh_app(served_app)).get("/health")
    assert health.status_code == 503 and "image tower" in health.json()["problem"]


def test_ids_holding_slashes_have_working_media_and_item_urls(served_app, tmp_path):
    from jointspace.data import read_manifest
    from jointspace.index.build import build_index
    from jointspace.models import load
    from jointspace.models.io import model_fingerprint

    app, manifest = served_app
    ids = ["shapes/red/1", "a b/c?d#e", "100%/x", "x/y/z.png"]
    lines = ["id,image,text,label,split"]
    (tmp_path / "images").mkdir()
    for i, (item_id, row) in enumerate(zip(ids, manifest.rows, strict=False)):
        (tmp_path / f"images/{i}.png").write_bytes(manifest.resolve(row["image"]).read_bytes())
        lines.append(f'"{item_id}",images/{i}.png,a digit,{row["label"]},test')
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    uri = f"faiss://{tmp_path / 'index'}"
    model_dir = app.state.model_dir
    build_index(
        load(model_dir),
        model_fingerprint(model_dir),
        read_manifest(tmp_path / "m.csv"),
        "image",
        uri,
        progress=False,
    ).close()
    client = TestClient(create_app(model_dir, uri))
    hits = client.post("/search", json={"text": "a digit", "k": 10}).json()["results"]
    assert sorted(h["id"] for h in hits) == sorted(ids)
    for hit in hits:
        assert client.get(hit["media"]).status_code == 200, hit["media"]
        item = client.get(hit["media"].replace("/media/", "/items/"))
        assert item.status_code == 200 and item.json()["id"] == hit["id"]
