"""save_classifier / load_classifier: every head comes back identical; damage is one clear line."""

import json

import pytest
import torch

from jointspace.classifier.io import (
    META_FILE,
    WEIGHTS_FILE,
    ClassifierMeta,
    load_classifier,
    save_classifier,
)
from jointspace.config import PartConfig
from jointspace.errors import ArtifactError, NotFoundError
from jointspace.models.fusion import FusionClassifier, build_fusion_head

DIMS = {"image": 6, "text": 5}
HEADS = [
    PartConfig("concat", {"width": 8}),
    PartConfig("gated", {"width": 8}),
    PartConfig("attention", {"width": 8, "heads": 2}),
    PartConfig("attention", {"width": 8, "heads": 2, "stream": "two"}),
    PartConfig("graph", {"width": 8}),
]


def inputs():
    generator = torch.Generator().manual_seed(0)
    return {
        m: (torch.randn(3, 4, d, generator=generator), torch.ones(3, 4, dtype=torch.bool))
        for m, d in DIMS.items()
    }


def saved(tmp_path, head=HEADS[0]):
    torch.manual_seed(0)
    model = FusionClassifier(build_fusion_head(head, DIMS), 3).eval()
    meta = ClassifierMeta(["a", "b", "c"], ["image", "text"], DIMS, head, "tokens", "f" * 16)
    fingerprint = save_classifier(model, meta, tmp_path)
    return model, fingerprint


@pytest.mark.parametrize("head", HEADS, ids=lambda h: f"{h.name}-{h.params.get('stream', '')}")
def test_every_head_round_trips_exactly(tmp_path, head):
    model, fingerprint = saved(tmp_path, head)
    loaded, meta = load_classifier(tmp_path)
    assert meta.fingerprint == fingerprint and len(fingerprint) == 16
    assert meta.classes == ["a", "b", "c"] and meta.head == head and meta.token_dims == DIMS
    with torch.no_grad():
        expected, used = model(inputs())
        found, used_loaded = loaded(inputs())
    assert used == used_loaded == ["image", "text"]
    torch.testing.assert_close(found, expected, atol=0, rtol=0)


def test_missing_or_damaged_files_are_one_clear_error(tmp_path):
    with pytest.raises(NotFoundError, match=r"classifier\.json missing"):
        load_classifier(tmp_path)
    saved(tmp_path)
    path = tmp_path / META_FILE
    good = json.loads(path.read_text())
    for change, message in [
        ({"format": "other"}, "not a jointspace classifier"),
        ({"format_version": 7}, "format version 7; this jointspace reads version 1"),
        ({"classes": "abc"}, "damaged"),
        ({"token_dims": {"image": 6}}, "do not fit its modalities"),
        ({"head": {"name": "nope", "params": {}}}, "damaged head config"),
    ]:
        path.write_text(json.dumps(good | change))
        with pytest.raises(ArtifactError, match=message):
            load_classifier(tmp_path)
    path.write_text(json.dumps(good))
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(ArtifactError, match=r"classifier\.safetensors: missing"):
        load_classifier(tmp_path)


def test_weights_of_another_shape_are_refused_even_with_a_matching_fingerprint(tmp_path):
    from jointspace.classifier.io import weights_fingerprint

    saved(tmp_path)
    path = tmp_path / META_FILE
    meta = json.loads(path.read_text())
    meta["classes"] = ["a", "b"]  # the weights hold 3 classes
    meta["fingerprint"] = weights_fingerprint("f" * 16, (tmp_path / WEIGHTS_FILE).read_bytes())
    path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"weights do not match classifier\.json"):
        load_classifier(tmp_path)
