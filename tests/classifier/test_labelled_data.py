"""labelled_sets: each unique input encoded once, classes from train, clear errors on bad labels."""

import pytest
import torch

from classify_helpers import write_xor_manifest, xor_config
from jointspace.classifier.data import labelled_sets
from jointspace.data import ManifestError
from jointspace.runs.classify import load_towers


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_xor_manifest(tmp_path_factory.mktemp("labelled"))


@pytest.fixture(scope="module")
def towers(manifest):
    return load_towers(xor_config(manifest))


def test_splits_classes_groups_and_rows_index_unique_inputs(manifest, towers, monkeypatch):
    import csv

    config = xor_config(manifest)
    calls = []
    real = towers.encode_tokens

    def counting(inputs, modality, **kwargs):
        calls.append((modality, len(inputs)))
        return real(inputs, modality, **kwargs)

    monkeypatch.setattr(towers, "encode_tokens", counting)
    sets = labelled_sets(config, towers)
    with manifest.open() as handle:
        rows = list(csv.DictReader(handle))
    texts = {r["text"] for r in rows}
    # each distinct input once, all splits together
    assert sorted(calls) == [("image", len(rows)), ("text", len(texts))]
    assert set(sets) == {"train", "val", "test"}
    assert [len(s) for s in sets.values()] == [240, 60, 60]
    for name, data in sets.items():
        chosen = [r for r in rows if r["split"] == name]
        assert data.classes == ["no", "yes"] and data.ids == [r["id"] for r in chosen]
        assert data.labels.tolist() == [data.classes.index(r["label"]) for r in chosen]
        assert data.groups == [r["meta_kind"] for r in chosen]
        assert data.tokens["text"][0] is sets["train"].tokens["text"][0]  # shared, not copied
        assert data.tokens["text"][0].shape[0] == len(texts)
    test = sets["test"]
    # a row's states are those of its own text, encoded alone
    states, keep = test.inputs(torch.tensor([3]))["text"]
    alone, alone_keep = towers.encode_tokens([rows[303]["text"]], "text")
    assert keep.sum() == alone_keep.sum()
    torch.testing.assert_close(states[keep], alone[alone_keep], atol=1e-5, rtol=1e-5)
    assert set(test.inputs(torch.tensor([0, 1]), {"image"})) == {"text"}
    assert test.dims == {"text": 16, "image": 16}


def test_pooled_inputs_are_one_token_of_the_towers_pooled_features(manifest, towers):
    config = xor_config(manifest)
    config.towers.inputs = "pooled"
    test = labelled_sets(config, towers)["test"]
    states, keep = test.inputs(torch.arange(4))["image"]
    assert states.shape == (4, 1, 16) and keep.all()
    from jointspace.data import load_image  # noqa: F401 (the tower reads the file itself)

    tower = towers.tower("image")
    path = manifest.parent / f"images/{300:04d}.png"
    with torch.no_grad():
        expected = tower.pooled(tower.collate([tower.preprocess(path)]))
    torch.testing.assert_close(states[0, 0], expected[0], atol=1e-6, rtol=1e-6)


def edit(manifest_dir, change, **kwargs):
    return write_xor_manifest(manifest_dir, rows=change, **kwargs)


def test_missing_label_column_is_named(tmp_path, towers):
    path = edit(tmp_path, lambda rows: [{k: v for k, v in r.items() if k != "label"} for r in rows])
    with pytest.raises(ManifestError, match=r"no data\.label_column column 'label'"):
        labelled_sets(xor_config(path), towers)
    config = xor_config(path)
    config.data.label_column = "meta_kind"
    config.data.group_column = "meta_nothing"
    with pytest.raises(ManifestError, match=r"no data\.group_column column 'meta_nothing'"):
        labelled_sets(config, towers)


def test_empty_label_names_file_row_column_and_id(tmp_path, towers):
    def blank(rows):
        rows[4]["label"] = " "
        rows[9]["label"] = ""
        return rows

    path = edit(tmp_path, blank)
    with pytest.raises(ManifestError) as caught:
        labelled_sets(xor_config(path), towers)
    message = str(caught.value)
    assert f"{path}, row 5, column 'label': empty label (id 'r0004')" in message
    assert "and 1 more rows" in message and "--skip-bad" in message
    config = xor_config(path)
    config.data.skip_bad = True
    assert len(labelled_sets(config, towers)["train"]) == 238


def test_a_class_the_train_split_never_shows_is_refused(tmp_path, towers):
    def unseen(rows):
        for r in rows:
            if r["split"] == "test" and r["label"] == "yes":
                r["label"] = "maybe"
        return rows

    path = edit(tmp_path, unseen)
    count = sum(1 for line in path.read_text().splitlines() if ",maybe," in line)
    with pytest.raises(ManifestError) as caught:
        labelled_sets(xor_config(path), towers)
    message = str(caught.value)
    assert f"class 'maybe' appears in {count} row(s) of split 'test'" in message
    assert "never in the train split" in message
    assert "add training rows" in message and "filter" in message


def test_a_missing_or_empty_split_is_refused(manifest, towers):
    config = xor_config(manifest)
    config.data.val_split = "dev"
    with pytest.raises(ManifestError, match=r"no rows in the val split 'dev' .*val_split: null"):
        labelled_sets(config, towers)
    config.data.val_split = None
    config.data.train_split = "training"
    with pytest.raises(ManifestError, match="no rows in the train split 'training'"):
        labelled_sets(config, towers)
    config = xor_config(manifest)
    config.data.val_split = config.data.test_split = None
    assert set(labelled_sets(config, towers)) == {"train"}
