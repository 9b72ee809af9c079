"""The report's retrieval section covers every direction between the modalities it is given."""

import numpy as np
import pytest

from jointspace.evaluate.retrieval import Retrieval, score_retrieval
from jointspace.report.build import _retrieval_section


def _pair(a, b, n_a, n_b, rng):
    x = rng.normal(size=(n_a, 4))
    y = rng.normal(size=(n_b, 4))
    relevant = np.zeros((n_a, n_b), dtype=bool)
    relevant[np.arange(n_a), np.arange(n_a) % n_b] = True
    values = ([f"{a}{i}" for i in range(n_a)], [f"{b}{j}" for j in range(n_b)])
    return Retrieval((a, b), values, (x, y), relevant)


def test_every_direction_with_its_own_rows_and_chance(tmp_path):
    rng = np.random.default_rng(0)
    pairs = [
        _pair("text", "image", 12, 12, rng),
        _pair("text", "audio", 5, 5, rng),
        _pair("image", "audio", 6, 5, rng),
    ]
    section = _retrieval_section(pairs, "pairs", tmp_path, [("x", "y")])
    metrics = section["metrics"]
    assert sorted(section["chance"]) == sorted(
        f"{a}_to_{b}" for p in pairs for a, b in (p.modalities, p.modalities[::-1])
    )
    for data in pairs:  # each pair's numbers are those of that pair alone
        alone = score_retrieval(data.scores, data.relevant, data.modalities, [1, 5])
        for key, value in alone.items():
            if "/" in key:
                assert metrics[key] == pytest.approx(value)
    recalls = [v for k, v in metrics.items() if "/R@" in k]
    assert len(recalls) == 12 and metrics["primary"] == pytest.approx(np.mean(recalls))
    assert metrics["skipped_pairs"] == 1 and metrics["skipped"] == "x–y"
    assert (tmp_path / "recall_at_k.png").is_file()
