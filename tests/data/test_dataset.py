import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import jointspace.data
from jointspace.data import (
    EpochBatchSampler,
    ManifestError,
    PairedDataset,
    make_collate,
    read_manifest,
)
from jointspace.data.sampler import batches_per_epoch


@pytest.fixture
def manifest(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (4, 4), (200, 10, 10)).save(tmp_path / "img" / f"{name}.png")
    rows = "id,image,text\n1,img/a.png,a cat\n2,img/a.png,a small cat\n3,img/b.png,a cat\n"
    (tmp_path / "m.csv").write_text(rows)
    return read_manifest(tmp_path / "m.csv", required=("text", "image"))


def draw(value, rng):
    """A stand-in preprocess that exposes what it received and the generator's first draw."""
    return value, None if rng is None else float(rng.random())


def test_items_carry_preprocessed_values_index_and_raw_keys(manifest, tmp_path):
    dataset = PairedDataset(manifest, {"text": draw, "image": draw})
    item = dataset[1]
    assert len(dataset) == 3
    assert item["text"] == ("a small cat", None)
    assert item["image"] == (tmp_path / "img" / "a.png", None)
    assert item["_index"] == 1 and item["_keys"] == {"text": "a small cat", "image": "img/a.png"}


def test_augmentation_depends_only_on_seed_epoch_and_row(manifest):
    dataset = PairedDataset(manifest, {"text": draw}, augment_seed=7)
    first = [dataset[i]["text"][1] for i in range(3)]
    assert len(set(first)) == 3  # each row gets its own stream
    assert dataset[2]["text"][1] == first[2]  # not consumed by earlier rows
    expected = np.random.default_rng([7, 0, 2]).random()
    assert first[2] == expected
    dataset.set_epoch(1)
    assert dataset[2]["text"][1] == np.random.default_rng([7, 1, 2]).random() != first[2]


def test_missing_modality_column_is_a_manifest_error(manifest):
    with pytest.raises(ManifestError, match=r"m.csv: no 'audio' column"):
        PairedDataset(manifest, {"audio": draw})


def test_collated_dataset_groups_shared_images_and_captions(manifest):
    dataset = PairedDataset(manifest, {"text": draw, "image": draw})
    collate = make_collate({m: lambda items: torch.zeros(len(items), 1) for m in ("text", "image")})
    batch = collate([dataset[i] for i in range(3)]).to("cpu")
    assert _numbered(batch.groups["image"]) == [0, 0, 1]
    assert _numbered(batch.groups["text"]) == [0, 1, 0]
    assert batch.groups["image"].dtype == torch.int64 and batch.index.tolist() == [0, 1, 2]
    # Ids name the value, not its place in a batch: rows gathered from other ranks compare.
    alone = collate([dataset[2]])
    assert alone.groups["image"].item() == batch.groups["image"][2].item()
    assert alone.groups["text"].item() == batch.groups["text"][0].item()


def _numbered(ids: torch.Tensor) -> list[int]:
    """Group ids renumbered by first appearance: which rows share a group, whatever the ids."""
    seen: dict[int, int] = {}
    return [seen.setdefault(i, len(seen)) for i in ids.tolist()]


def test_sampler_with_a_dataloader_and_without_drop_last():
    sampler = EpochBatchSampler(10, 4, seed=0, drop_last=False)
    batches = list(sampler)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert EpochBatchSampler.batches_per_epoch(10, 4, drop_last=False) == 3
    assert batches_per_epoch(10, 4) == 2
    loader = torch.utils.data.DataLoader(list(range(10)), batch_sampler=sampler)
    assert [b.tolist() for b in loader] == batches
    with pytest.raises(ValueError, match="start_batch must be 0 or more, got -1"):
        EpochBatchSampler(10, 4, seed=0, start_batch=-1)


HIGHER_LAYERS = ("encoders", "models", "objectives", "train", "evaluate", "cli", "pipeline")


def test_data_layer_imports_no_higher_layer():
    package = Path(jointspace.data.__file__).parent
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                parts = name.split(".")
                bad = parts[0] == "jointspace" and len(parts) > 1 and parts[1] in HIGHER_LAYERS
                assert not bad, f"{source.name} imports {name}"
