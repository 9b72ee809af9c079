"""Empty modality cells mean "absent": validated, marked in Batch.present, never positives."""

import torch
from typer.testing import CliRunner

from absent_helpers import write_three_modality_manifest
from jointspace.cli import app
from jointspace.data import PairedDataset, make_collate, read_manifest
from jointspace.data.collate import ABSENT
from jointspace.objectives.masks import positive_pairs

runner = CliRunner()
MODALITIES = ("text", "image", "audio")


def test_validate_accepts_absent_cells_and_still_rejects_a_broken_file(tmp_path):
    path = write_three_modality_manifest(tmp_path, rows=12)
    manifest = read_manifest(path, required=MODALITIES)
    assert [manifest.has(i, "audio") for i in range(4)] == [False, False, True, False]
    assert not manifest.has(1, "text") and not manifest.has(1, "audio")  # an image alone
    result = runner.invoke(app, ["data", "validate", str(path)])
    assert result.exit_code == 0 and "12 rows, no problems" in result.output
    (tmp_path / "wav" / "2.wav").write_bytes(b"RIFF not really a wave")
    lines = path.read_text().splitlines()
    lines[4] = "3,,,,red,train"  # row 4 holds nothing at all
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["data", "validate", str(path)], terminal_width=300)
    assert result.exit_code == 1
    assert "row 3, column 'audio':" in result.output
    assert "row 4: no modality: text, image, audio are all empty" in result.output
    assert "2 bad rows" in result.output


def dataset(tmp_path, **kwargs):
    manifest = read_manifest(write_three_modality_manifest(tmp_path, **kwargs))
    # Stand-in preprocessing: one number per cell, so fillers can be traced to their row.
    preprocess = {m: (lambda raw, rng: torch.tensor([float(len(str(raw)))])) for m in MODALITIES}
    return PairedDataset(manifest, preprocess)


def test_collate_marks_presence_fills_absent_rows_and_gives_them_unique_groups(tmp_path):
    data = dataset(tmp_path, rows=8)
    sample = data[1]
    assert sample["text"] is ABSENT and sample["audio"] is ABSENT and sample["image"] is not None
    collate = make_collate({m: torch.stack for m in MODALITIES})
    batch = collate([data[i] for i in range(8)])
    assert batch.present["audio"].tolist() == [False, False, True, False, True, True, False, True]
    assert batch.present["text"].tolist() == [True, False] + [True] * 6
    assert batch.present["image"].all()
    filler = data[2]["audio"]  # the first row holding audio
    for i in (0, 1, 3, 6):
        assert torch.equal(batch.inputs["audio"][i], filler)
    assert batch.inputs["audio"].shape == (8, 1)
    # Absent cells: negative ids unique to the row; present ones the usual hash of the value.
    assert batch.groups["audio"][~batch.present["audio"]].tolist() == [-1, -2, -4, -7]
    assert (batch.groups["audio"][batch.present["audio"]] >= 0).all()
    moved = batch.to("cpu")
    assert all(torch.equal(moved.present[m], batch.present[m]) for m in MODALITIES)


def test_a_row_with_one_modality_never_pairs_with_another(tmp_path):
    data = dataset(tmp_path, rows=8, audio_every=1, lone_image_rows=(1, 5))  # no audio at all
    batch = make_collate({m: torch.stack for m in MODALITIES})([data[i] for i in range(8)])
    positives = positive_pairs(batch.groups)
    # Rows 1 and 5 both lack text and audio: their absent cells never make them positives.
    assert positives[1].tolist() == [i == 1 for i in range(8)]
    assert positives[5].tolist() == [i == 5 for i in range(8)]
    # No row holds audio: it is left out of the inputs, marked absent everywhere.
    assert "audio" not in batch.inputs and not batch.present["audio"].any()
    assert set(batch.inputs) == {"text", "image"}


def test_shards_keep_absent_cells_absent(tmp_path):
    from jointspace.data.shard_dataset import ShardDataset
    from jointspace.data.shards import write_shards

    data = dataset(tmp_path / "rows", rows=8)
    write_shards(data.manifest, tmp_path / "shards", maxcount=3)
    streamed = list(ShardDataset(str(tmp_path / "shards"), data.preprocess))
    assert [s["_index"] for s in streamed] == list(range(8))
    for i, sample in enumerate(streamed):
        for m in MODALITIES:
            assert (sample[m] is ABSENT) == (not data.manifest.has(i, m)), (i, m)
    batch = make_collate({m: torch.stack for m in MODALITIES})(streamed)
    assert batch.present["audio"].tolist() == [data.manifest.has(i, "audio") for i in range(8)]
