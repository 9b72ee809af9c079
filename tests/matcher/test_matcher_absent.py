"""matching_set on a manifest with absent cells: only rows holding both sides, counted."""

import torch

from absent_use import holed_and_clean, untrained_model
from jointspace.data import read_manifest
from jointspace.matcher.data import matching_set


def test_matching_set_scores_exactly_the_rows_holding_both(tmp_path):
    holed, clean, gone = holed_and_clean(tmp_path, ["text", "audio"])
    model = untrained_model(holed)
    for relevance in ("pairs", "label"):
        got = matching_set(model, read_manifest(holed), ("text", "audio"), relevance)
        expected = matching_set(model, read_manifest(clean), ("text", "audio"), relevance)
        assert got.left_out == gone == 18 and expected.left_out == 0
        assert got.scores.shape == expected.scores.shape == (8, 30)  # distinct texts, clips
        torch.testing.assert_close(got.scores, expected.scores)
        assert torch.equal(got.relevant, expected.relevant)
        for m in ("text", "audio"):
            for a, b in zip(got.tokens[m], expected.tokens[m], strict=True):
                torch.testing.assert_close(a, b)
