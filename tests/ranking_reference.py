"""A loop-by-loop reference for ranking metrics, which the vectorised ones must equal."""

import numpy as np


def naive_stats(scores, relevant):
    """First relevant rank and average precision per query, ties against the model."""
    ranks, aps = [], []
    for s, r in zip(scores, relevant, strict=True):
        order = sorted(range(len(s)), key=lambda j: (-s[j], bool(r[j]), j))
        hits = [bool(r[j]) for j in order]
        ranks.append(hits.index(True) + 1)
        found, precisions = 0, []
        for position, hit in enumerate(hits, start=1):
            if hit:
                found += 1
                precisions.append(found / position)
        aps.append(sum(precisions) / len(precisions))
    return np.array(ranks), np.array(aps)
