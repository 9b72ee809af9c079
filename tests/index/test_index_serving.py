"""The service opens its index read-only: searching never writes, bad filters are 422s."""

from fastapi.testclient import TestClient


def snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_serving_never_writes_the_index_and_refuses_bad_filters(served_app):
    app, _ = served_app
    index = app.state.index
    assert index.writable is False
    before = snapshot(index.path)
    with TestClient(app) as client:
        ok = client.post("/search", data={"text": "a seven", "k": "3", "filter": 'split == "test"'})
        assert ok.status_code == 200 and len(ok.json()["results"]) == 3
        huge = client.post(
            "/search", data={"text": "a seven", "filter": "label == 99999999999999999999999"}
        )
        assert huge.status_code == 422 and "out of range" in huge.json()["detail"]  # main: 500
        unknown = client.post("/search", data={"text": "a seven", "filter": 'colour == "red"'})
        assert unknown.status_code == 422  # main: 200 with no results and no warning
        assert "known fields: image, label, split" in unknown.json()["detail"]
    # The app is shared with other tests: close a second reader as a shutting-down server would.
    from jointspace.index import open_index

    open_index(f"faiss://{index.path}").close()
    assert snapshot(index.path) == before
