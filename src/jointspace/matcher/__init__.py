"""The matcher: a cross-modal second stage that re-ranks the bi-encoder's top candidates.

Its own model, loss, training, evaluation and search-time scorer, as in an ALBEF/BLIP re-ranker.
"""

from jointspace.matcher.data import MatchingSet, matching_set
from jointspace.matcher.evaluate import MatcherEvaluator, fit_prior_weight, rerank_metrics
from jointspace.matcher.fit import MatcherFit, fit_matcher, new_matcher
from jointspace.matcher.loss import ITMLoss, hard_negatives, itm_loss, sample_positives
from jointspace.matcher.model import (
    MATCHER_DIR,
    CrossModalMatcher,
    MatcherConfig,
    load_matcher,
    save_matcher,
)
from jointspace.matcher.search import SearchMatcher

__all__ = [
    "MATCHER_DIR",
    "CrossModalMatcher",
    "ITMLoss",
    "MatcherConfig",
    "MatcherEvaluator",
    "MatcherFit",
    "MatchingSet",
    "SearchMatcher",
    "fit_matcher",
    "fit_prior_weight",
    "hard_negatives",
    "itm_loss",
    "load_matcher",
    "matching_set",
    "new_matcher",
    "rerank_metrics",
    "sample_positives",
    "save_matcher",
]
