"""Manifest → WebDataset shards → training samples: layout, order, splitting, resume, damage."""

import json
import tarfile

import pytest
import torch
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from jointspace.cli import app
from jointspace.data import ImageTransform, PairedDataset, load_image, make_collate, read_manifest
from jointspace.data.manifest import ManifestError
from jointspace.data.shard_dataset import ShardDataset, delivered
from jointspace.data.shard_set import ShardSet, is_shard_spec
from jointspace.data.shards import ShardError, sample_key, write_shards
from jointspace.data.source import ShardSource
from shard_helpers import SPLITS, small_manifest

runner = CliRunner()
transform = ImageTransform(size=8)
# What the towers do: the image tower decodes (a path, or a shard's decoded image), transforms.
PREPROCESS = {
    "text": lambda raw, rng: raw,
    "image": lambda raw, rng: transform(load_image(raw), rng),
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return read_manifest(small_manifest(tmp_path_factory.mktemp("small")))


@pytest.fixture(scope="module")
def shards(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "out"
    write_shards(manifest, out, maxcount=5)
    return out


def indices(dataset, **loader):
    if not loader:
        return [s["_index"] for s in dataset]
    batches = DataLoader(dataset, collate_fn=lambda s: [x["_index"] for x in s], **loader)
    return [i for batch in batches for i in batch]


def test_a_manifest_path_is_validated_on_the_way(manifest, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(manifest.path.read_text().replace("images/pic3.png", "images/missing.png"))
    (tmp_path / "images").symlink_to(manifest.root / "images")
    with pytest.raises(ManifestError, match=r"bad.csv, row 7, column 'image': file not found"):
        write_shards(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    index = write_shards(bad, tmp_path / "out", skip_bad=True)
    assert index["samples"] == 22  # rows 7 and 8 held the missing image


def test_layout_and_index_counts(manifest, shards):
    index = json.loads((shards / "index.json").read_text())
    assert [e["name"] for e in index["shards"]] == [f"shard-{n:06d}.tar" for n in range(5)]
    assert [e["samples"] for e in index["shards"]] == [5, 5, 5, 5, 4]
    assert index["samples"] == 24 and index["modalities"] == ["text", "image"]
    assert index["splits"] == {"train": 16, "val": 4, "test": 4}
    assert index["distinct"]["image"] == {"all": 12, "splits": {"train": 8, "val": 2, "test": 2}}
    with tarfile.open(shards / "shard-000000.tar") as tar:
        names = tar.getnames()
    assert names[:3] == [f"000000000_row-0-v1-x.{ext}" for ext in ("json", "png", "txt")]
    assert all(name.count(".") == 1 for name in names)  # WebDataset keys end at the first dot
    assert sample_key(7, "a/b.c d") == "000000007_a-b-c-d" and sample_key(3, "...") == "000000003"


def test_round_trip_gives_the_manifest_batch(manifest, shards):
    """Texts, image tensors, ids, labels, splits and duplicate groups as from the manifest."""
    train = manifest.split("train")
    streamed = list(ShardDataset(shards, PREPROCESS, split="train"))  # in order: no shuffle
    direct = PairedDataset(train, PREPROCESS)
    assert len(streamed) == len(direct) == 16
    for row, a in enumerate(streamed):
        b = direct[row]
        assert a["text"] == b["text"]
        assert torch.equal(a["image"], b["image"])
    collate = make_collate({"text": list, "image": torch.stack})
    got, want = collate(streamed[:8]), collate([direct[i] for i in range(8)])
    assert torch.equal(got.inputs["image"], want.inputs["image"])
    for m in ("text", "image"):
        # Group ids are hashes of different keys (bytes vs paths): compare which rows share one.
        same = [g.unsqueeze(0) == g.unsqueeze(1) for g in (got.groups[m], want.groups[m])]
        assert torch.equal(*same)  # shared captions/images still masked
    records = [r for s in ShardSet.open(shards).shards for r in ShardSet.open(shards).samples(s)]
    assert [r.id for r in records] == manifest.column("id")
    assert [(r.label, r.split, r.meta["meta_source"]) for r in records] == [
        (row["label"], row["split"], row["meta_source"]) for row in manifest.rows
    ]
    assert [r.value("image") for r in records] == manifest.column("image")


def test_specs_name_shards_by_folder_pattern_or_glob(shards):
    pattern = str(shards / "shard-{000000..000004}.tar")
    assert is_shard_spec(shards) and is_shard_spec(pattern) and not is_shard_spec("m.csv")
    assert len(ShardSet.open(pattern)) == len(ShardSet.open(shards / "*.tar")) == 24
    assert len(ShardSet.open(str(shards / "shard-{000001..000002}.tar"))) == 10
    with pytest.raises(ShardError, match=r"shard not found: .*shard-000008.tar \(and 1 more\)"):
        ShardSet.open(str(shards / "shard-{000008..000009}.tar"))
    with pytest.raises(ManifestError, match="names tar shards: this command reads a manifest"):
        from jointspace.data import load_manifest

        load_manifest(pattern, ["text"])


def test_shuffle_is_seeded_per_epoch_and_each_sample_comes_once(shards):
    def order(seed, epoch):
        dataset = ShardDataset(shards, {"text": PREPROCESS["text"]}, shuffle_buffer=6, seed=seed)
        dataset.set_epoch(epoch)
        return indices(dataset)

    first = order(1, 0)
    assert sorted(first) == list(range(24))
    assert first == order(1, 0) and first != order(1, 1) and first != order(2, 0)
    assert first != list(range(24))
    train = ShardDataset(shards, {"text": PREPROCESS["text"]}, split="train", shuffle_buffer=6)
    assert sorted(indices(train)) == [i for i, s in enumerate(SPLITS) if s == "train"]


def test_ranks_and_workers_partition_the_samples(shards):
    seen = []
    for rank in range(2):
        dataset = ShardDataset(
            shards,
            {"text": PREPROCESS["text"]},
            shuffle_buffer=3,
            batch_size=1,
            num_workers=2,
            rank=rank,
            world_size=2,
        )
        got = indices(dataset, batch_size=1, num_workers=2)
        assert len(got) == dataset.batches_per_epoch() == 10  # the smaller rank's 10 samples
        seen.append(got)
    assert not set(seen[0]) & set(seen[1])
    # rank 0 holds shards 0, 2, 4 (14 samples: 4 left out to stay in step), rank 1 shards 1, 3
    assert set(seen[1]) == set(range(5, 10)) | set(range(15, 20))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers", [0, 2, 3])
def test_resume_starts_at_the_saved_position(shards, workers):
    def epoch(start):
        dataset = ShardDataset(
            shards,
            {"text": PREPROCESS["text"]},
            shuffle_buffer=4,
            seed=3,
            batch_size=3,
            num_workers=workers,
        )
        dataset.set_epoch(1, start)
        return indices(dataset, batch_size=3, num_workers=workers, drop_last=True)

    full = epoch(0)
    # 24 samples: 8 batches of 3; workers make whole batches apart (2: 14 + 10 samples → 4 + 3
    # batches; 3: 10 + 9 + 5 → 3 + 3 + 1, the last one running out mid-epoch).
    assert len(full) == 3 * (8 if workers == 0 else 7)
    assert sorted(full) == sorted(set(full))
    for start in (3, 9, 15):
        assert epoch(start) == full[start:]


def test_delivered_follows_the_dataloaders_turns():
    # Turns: w0 w1 w2 | w0 w2 | w0
    assert delivered([3, 1, 2], 4) == ([2, 1, 1], 2)
    assert delivered([3, 1, 2], 3) == ([1, 1, 1], 0)
    assert delivered([3, 1, 2], 6)[0] == [3, 1, 2] == delivered([3, 1, 2], 99)[0]


def test_a_truncated_shard_is_named(manifest, tmp_path):
    out = tmp_path / "out"
    write_shards(manifest, out, maxcount=5)
    damaged = out / "shard-000001.tar"
    damaged.write_bytes(damaged.read_bytes()[:3000])  # cut inside a member
    dataset = ShardDataset(out, {"text": PREPROCESS["text"]})
    with pytest.raises(ShardError, match=r"shard-000001.tar: 3000 bytes where its index says"):
        list(dataset)
    # Cut where a sample starts, and without an index: a tar reader cannot tell, the size can.
    (out / "index.json").unlink()
    cut = out / "shard-000002.tar"
    with tarfile.open(cut) as tar:
        start = next(m for m in tar.getmembers() if m.name.startswith("000000014")).offset
    cut.write_bytes(cut.read_bytes()[:start])
    with pytest.raises(ShardError, match=r"000002.tar: damaged or truncated shard \(its size"):
        list(ShardSource(ShardSet.open(str(cut))).items("text"))


def test_shards_command_writes_and_refuses_to_overwrite(manifest, tmp_path):
    out = tmp_path / "shards"
    args = ["data", "shards", str(manifest.path), "--out", str(out), "--maxcount", "10"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "wrote 24 samples in 3 shards" in first.output
    before = (out / "shard-000000.tar").read_bytes()
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "--force" in again.output
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert (out / "shard-000000.tar").read_bytes() == before  # same rows, same bytes
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    refused = runner.invoke(app, ["data", "shards", str(manifest.path), "--out", str(mine)])
    assert refused.exit_code == 1 and "not written by `jointspace data shards`" in refused.output
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]
