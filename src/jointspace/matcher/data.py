"""MatchingSet: one split as a matcher trains and is evaluated on it, built once from a model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from jointspace.data.manifest import Manifest
from jointspace.evaluate.retrieval import relevance_matrix
from jointspace.models.embedding import embed_items, item_inputs
from jointspace.models.joint import JointModel
from jointspace.models.tokens import Tokens


@dataclass
class MatchingSet:
    """One split as a matcher sees it: token states per modality, bi-encoder scores, matches."""

    modalities: tuple[str, str]
    tokens: dict[str, Tokens]
    scores: torch.Tensor  # [len(a), len(b)] bi-encoder similarities
    relevant: torch.Tensor  # [len(a), len(b)] bool

    def direction(self, query: str) -> tuple[str, torch.Tensor, torch.Tensor]:
        """The target modality, scores and matches with ``query`` as the rows."""
        a, b = self.modalities
        if query == a:
            return b, self.scores, self.relevant
        return a, self.scores.T, self.relevant.T

    def pair_tokens(
        self, query: str, rows: torch.Tensor, target: str, columns: torch.Tensor
    ) -> dict[str, Tokens]:
        """Token states of ``query`` item ``rows[i]`` beside ``target`` item ``columns[i]``."""
        query_states, query_mask = self.tokens[query]
        target_states, target_mask = self.tokens[target]
        return {
            query: (query_states[rows], query_mask[rows]),
            target: (target_states[columns], target_mask[columns]),
        }


def matching_set(
    model: JointModel,
    manifest: Manifest,
    modalities: Sequence[str],
    relevance: str = "pairs",
    batch_size: int = 64,
) -> MatchingSet:
    """Embed and tokenise each unique value of both modalities once; score all pairs."""
    a, b = modalities
    values_a, values_b, relevant = relevance_matrix(manifest, a, b, relevance)
    tokens, embedded = {}, []
    for modality, values in ((a, values_a), (b, values_b)):
        inputs = item_inputs(manifest, modality, values)
        tokens[modality] = model.encode_tokens(inputs, modality, batch_size=batch_size)
        _, vectors = embed_items(model, manifest, modality, values, batch_size=batch_size)
        embedded.append(torch.from_numpy(vectors))
    scores = embedded[0] @ embedded[1].T
    return MatchingSet((a, b), tokens, scores, torch.from_numpy(relevant))
