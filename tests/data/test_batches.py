import pytest
import torch

from jointspace.data import EpochBatchSampler, make_collate


def test_collate_groups_rows_sharing_a_value():
    samples = [
        {"text": f"t{i}", "_index": i, "_keys": {"text": t, "image": im}}
        for i, (t, im) in enumerate([("a", "x.png"), ("b", "x.png"), ("a", "y.png")])
    ]
    collate = make_collate({"text": lambda items: torch.zeros(len(items), 2)})
    batch = collate(samples)
    assert len(batch) == 3 and batch.inputs["text"].shape == (3, 2)
    groups = batch.groups["text"].tolist()
    assert groups[0] == groups[2] != groups[1]
    assert batch.index.tolist() == [0, 1, 2]


def test_sampler_is_seeded_and_resumable():
    full = list(EpochBatchSampler(50, 8, seed=3, epoch=1))
    assert full == list(EpochBatchSampler(50, 8, seed=3, epoch=1))
    assert full != list(EpochBatchSampler(50, 8, seed=3, epoch=2))
    assert len(full) == 6 and all(len(b) == 8 for b in full)
    tail = EpochBatchSampler(50, 8, seed=3, epoch=1, start_batch=4)
    assert list(tail) == full[4:] and len(tail) == 2


def test_sampler_errors_name_the_numbers():
    with pytest.raises(ValueError, match="batch_size 64 is larger than the 10 training rows"):
        EpochBatchSampler(10, 64, seed=0)
    with pytest.raises(ValueError, match="at least 1"):
        EpochBatchSampler(10, 0, seed=0)
