"""CrossModalMatcher: saved and loaded without pickle, tied to the bi-encoder it was trained on."""

import json

import pytest
import torch

from jointspace.config import ConfigError
from jointspace.matcher.model import (
    METRICS_FILE,
    CrossModalMatcher,
    MatcherConfig,
    load_matcher,
    save_matcher,
)


def test_matcher_round_trips_and_refuses_another_model(tmp_path):
    config = MatcherConfig(["text", "image"], {"text": 8, "image": 4}, {"text": 5, "image": 3})
    config.model_fingerprint = "abc"
    matcher = CrossModalMatcher(config)
    matcher.prior_weight.fill_(2.5)
    save_matcher(matcher, tmp_path / "m", {"candidates": 5})
    loaded = load_matcher(tmp_path / "m", "abc")
    tokens = {
        "text": (torch.randn(4, 5, 8), torch.tensor([[1, 1, 1, 0, 0]] * 4, dtype=torch.bool)),
        "image": (torch.randn(4, 3, 4), torch.ones(4, 3, dtype=torch.bool)),
    }
    matcher.eval()
    assert torch.equal(matcher.score(tokens, torch.ones(4)), loaded.score(tokens, torch.ones(4)))
    assert float(loaded.prior_weight) == 2.5
    assert json.loads((tmp_path / "m" / METRICS_FILE).read_text()) == {"candidates": 5}
    with pytest.raises(ConfigError, match="trained for model abc"):
        load_matcher(tmp_path / "m", "other")
    with pytest.raises(ValueError, match="at most 5"):
        loaded({**tokens, "text": (torch.randn(4, 6, 8), torch.ones(4, 6, dtype=torch.bool))})
