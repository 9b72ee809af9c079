"""Zero-shot, linear probe and geometry on a manifest with absent cells: rows lacking the
modality (or a side of the pair) are left out and counted, the numbers those of the rest."""

import numpy as np
import pytest

from absent_use import holed_and_clean, untrained_model
from jointspace.data import read_manifest
from jointspace.evaluate.zeroshot import evaluate_zero_shot
from jointspace.report.build import _geometry_section, _probe_section


@pytest.mark.parametrize("modality", ["audio", "text"])
def test_zero_shot_leaves_out_and_counts_rows_without_the_modality(tmp_path, modality):
    holed, clean, gone = holed_and_clean(tmp_path, [modality])
    model = untrained_model(holed)
    got = evaluate_zero_shot(model, read_manifest(holed), modality=modality)
    expected = evaluate_zero_shot(model, read_manifest(clean), modality=modality)
    assert gone == {"audio": 18, "text": 4}[modality] and got.absent_rows == gone
    assert expected.absent_rows == 0
    assert got.metrics == expected.metrics and got.labels == expected.labels
    np.testing.assert_array_equal(got.confusion, expected.confusion)


def test_probe_and_geometry_use_only_rows_holding_their_modalities(tmp_path):
    holed, clean, gone = holed_and_clean(tmp_path, ["text", "audio"])
    model = untrained_model(holed)
    full, complete = read_manifest(holed), read_manifest(clean)
    rng = np.random.default_rng(0)
    geometry = _geometry_section(model, full, ("text", "audio"), rng)
    expected = _geometry_section(model, complete, ("text", "audio"), rng)
    assert geometry["rows_left_out"] == gone == 18 and expected["rows_left_out"] == 0
    assert geometry["values"] == expected["values"]

    probe = _probe_section(model, full, "audio")
    _, clean_audio, _ = holed_and_clean(tmp_path / "audio", ["audio"])
    reference = _probe_section(model, read_manifest(clean_audio), "audio")
    # rows i % 3 == 0 and the lone images 1 and 4 lack audio; test rows: i % 5 == 0
    assert probe["absent_rows"] == {"train": 14, "test": 4}
    assert reference["absent_rows"] == {"train": 0, "test": 0}
    for key in ("best_C", "val_accuracy", "test_accuracy", "sweep", "classes"):
        assert probe[key] == reference[key], key
