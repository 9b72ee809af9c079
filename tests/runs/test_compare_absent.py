"""compare's closed-form CCA and the demo's search on a manifest with absent cells: only rows
holding the modalities used, the numbers those of the manifest without the other rows."""

import pytest

from absent_helpers import three_modality_config
from absent_use import holed_and_clean, untrained_model
from jointspace.data import read_manifest
from jointspace.runs.compare import compare
from jointspace.runs.search import search_manifest


def test_linear_cca_in_compare_fits_on_the_rows_holding_both(tmp_path, capfd):
    holed, clean, gone = holed_and_clean(tmp_path, ["text", "image"])
    config = three_modality_config()
    config.data.modalities, config.data.test_split = ["text", "image"], "test"
    del config.model.towers["audio"]
    rows = {}
    for name, path in (("holed", holed), ("clean", clean)):
        (row,) = compare(config, ["cca"], tmp_path / name, manifest=path, log=lambda _: None)
        rows[name] = {k: v for k, v in row.items() if k != "train_seconds"}
    logged = capfd.readouterr().err
    assert gone == 4 and logged.count("linear CCA: 4 rows without text or image left out") == 1
    assert rows["holed"] == rows["clean"]
    assert rows["holed"]["text_to_image/R@1"] == pytest.approx(rows["clean"]["text_to_image/R@1"])


def test_search_finds_only_items_there_are(tmp_path):
    holed, clean, _ = holed_and_clean(tmp_path, ["audio"])
    model = untrained_model(holed)
    queries = ["a red thing", "a blue patch"]
    got = search_manifest(model, read_manifest(holed), queries, "audio", k=40)
    expected = search_manifest(model, read_manifest(clean), queries, "audio", k=40)
    assert got == expected and len(got[0]) == 30  # the 30 clips; no empty one among them


def test_the_demo_index_holds_only_items_there_are(tmp_path):
    from jointspace.index.build import build_index

    holed, clean, gone = holed_and_clean(tmp_path, ["audio"])
    model = untrained_model(holed)
    found = {}
    for name, path in (("holed", holed), ("clean", clean)):
        uri = f"faiss://{tmp_path / name}"
        with build_index(model, "f", read_manifest(path), "audio", uri, progress=False) as index:
            query = model.encode(["a red thing"], "text")
            found[name] = [(h.id, round(h.score, 5)) for h in index.search(query, k=40)[0]]
    assert gone == 18 and len(found["holed"]) == 30 and found["holed"] == found["clean"]
