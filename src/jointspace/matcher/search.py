"""SearchMatcher: the matcher re-scores an index search's top hits (service and CLI)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from jointspace.errors import ArtifactError
from jointspace.index import IndexHit
from jointspace.index.build import media_path
from jointspace.matcher.model import CrossModalMatcher
from jointspace.models.joint import JointModel
from jointspace.models.tokens import Tokens, pad_tokens, trim_tokens


class SearchMatcher:
    """Scores (query, candidate) pairs with ``matcher``; candidates' tokens are kept in an LRU."""

    def __init__(
        self,
        model: JointModel,
        matcher: CrossModalMatcher,
        target: str,
        root: Path | None,
        cache_items: int = 4096,
    ):
        self.model, self.matcher, self.target, self.root = model, matcher, target, root
        self.cache_items = cache_items
        self._tokens: OrderedDict[str, Tokens] = OrderedDict()

    def supports(self, query: str) -> bool:
        return sorted([query, self.target]) == sorted(self.matcher.modalities)

    def rerank(
        self, query: str, raw: Any, hits: list[IndexHit], depth: int
    ) -> list[tuple[IndexHit, float | None]]:
        """``hits`` with the first ``depth`` re-ordered by matcher score; the rest unscored."""
        head = hits[:depth]
        scored = sorted(zip(head, self.scores(query, raw, head), strict=True), key=lambda p: -p[1])
        return scored + [(hit, None) for hit in hits[depth:]]

    @torch.no_grad()
    def scores(self, query: str, raw: Any, hits: list[IndexHit]) -> list[float]:
        """The matcher's score of the query against each hit, given the bi-encoder's as prior."""
        if not hits:
            return []
        states, mask = self.model.encode_tokens([raw], query)
        candidates = self._target_tokens(hits)
        count = len(hits)
        tokens = {
            query: (states.expand(count, -1, -1), mask.expand(count, -1)),
            self.target: candidates,
        }
        prior = torch.tensor([h.score for h in hits])
        return self.matcher.score(tokens, prior).tolist()

    def _target_tokens(self, hits: list[IndexHit]) -> Tokens:
        missing = [h for h in hits if h.id not in self._tokens]
        if missing:
            inputs = [self._input(h.metadata) for h in missing]
            states, mask = self.model.encode_tokens(inputs, self.target)
            for i, hit in enumerate(missing):
                self._tokens[hit.id] = trim_tokens(states[i : i + 1], mask[i : i + 1])
        for hit in hits:
            self._tokens.move_to_end(hit.id)
        while len(self._tokens) > self.cache_items:
            self._tokens.popitem(last=False)
        return pad_tokens([self._tokens[h.id] for h in hits])

    def _input(self, metadata: dict[str, Any]) -> Any:
        value = metadata.get(self.target)
        if value is None:
            raise ArtifactError(f"an indexed item has no {self.target!r} to re-rank with")
        if self.target == "text":
            return str(value)
        path = media_path(self.root, value)
        if path is None:
            raise ArtifactError(f"indexed media {value!r} is not a file under {self.root}")
        return path
