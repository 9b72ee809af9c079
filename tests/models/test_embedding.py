"""embed_items: the one path from a manifest's distinct items to vectors, used everywhere."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from conftest import tiny_config
from jointspace.data import read_manifest
from jointspace.data.manifest import ManifestError
from jointspace.models import embedding
from jointspace.models.build import build_model
from jointspace.models.embedding import distinct_items, embed_items, per_row


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_config().model, corpus=["a handwritten 7", "the digit 3"]).eval()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, digits_manifest):
    """Three images, one of them under two captions: two rows share an image."""
    rows = list({r["image"]: r for r in read_manifest(digits_manifest).rows}.values())[:3]
    folder = digits_manifest.parent
    lines = ["id,text,image,label"]
    for n, (row, text) in enumerate(zip([*rows, rows[0]], ["a", "b", "c", "d"], strict=True)):
        lines.append(f"r{n},{text},{(folder / row['image']).resolve()},{row['label']}")
    path = tmp_path_factory.mktemp("m") / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    return read_manifest(path)


def test_distinct_items_keep_first_appearance_and_first_row(manifest):
    values, rows = distinct_items(manifest, "image")
    images = manifest.column("image")
    assert values == images[:3] and len(manifest.rows) == 4 and images[3] == images[0]
    assert [r["id"] for r in rows] == ["r0", "r1", "r2"]
    with pytest.raises(ManifestError, match=r"m\.csv: no column 'audio'"):
        distinct_items(manifest, "audio")


def test_embed_items_embeds_each_distinct_item_once(model, manifest, monkeypatch):
    seen = []
    real = model.encode

    def counting(inputs, modality, **kw):
        seen.append(list(inputs))
        return real(inputs, modality, **kw)

    monkeypatch.setattr(model, "encode", counting)
    values, vectors = embed_items(model, manifest, "image", batch_size=2)
    assert values == manifest.column("image")[:3] and len(seen) == 1 and len(seen[0]) == 3
    expected = real([manifest.resolve(v) for v in values], "image")
    assert vectors.dtype == np.float32 and vectors.shape == (3, model.config.embed_dim)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    spread = per_row(manifest, "image", values, vectors)
    np.testing.assert_array_equal(spread[3], vectors[0])  # the repeated image: same vector
    _, raw = embed_items(model, manifest, "text", ["b", "a"], normalize=False)
    np.testing.assert_allclose(raw, real(["b", "a"], "text", normalize=False), atol=1e-6)


def test_every_manifest_embedding_goes_through_embed_items(model, manifest, monkeypatch, tmp_path):
    """Evaluation, index build, export, closed-form fitting and re-ranking: one function."""
    from jointspace.evaluate.retrieval import evaluate_retrieval
    from jointspace.index.build import build_index
    from jointspace.matcher.data import matching_set
    from jointspace.runs.export import embed_manifest
    from jointspace.train.closed_form import head_inputs

    calls: list[tuple[str, int]] = []
    real = embedding.item_inputs

    def counting(manifest, modality, values):
        calls.append((modality, len(values)))
        return real(manifest, modality, values)

    monkeypatch.setattr(embedding, "item_inputs", counting)

    evaluate_retrieval(model, manifest)
    assert calls == [("text", 4), ("image", 3)]
    calls.clear()
    build_index(model, "test-model", manifest, "image", f"faiss://{tmp_path / 'i'}", progress=False)
    assert calls == [("image", 3)]
    calls.clear()
    table = embed_manifest(model, manifest, "image")
    assert calls == [("image", 3)] and isinstance(table, pa.Table) and len(table) == 3
    calls.clear()
    assert head_inputs(model, manifest, "image").shape[0] == 4  # one row per manifest row
    assert calls == [("image", 3)]  # but each distinct image embedded once
    calls.clear()
    matching_set(model, manifest, ("text", "image"))
    assert ("text", 4) in calls and ("image", 3) in calls
