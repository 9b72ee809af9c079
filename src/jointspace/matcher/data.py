"""MatchingSet: one split as a matcher trains and is evaluated on it, built once from a model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from jointspace.data.complete import left_out_note, rows_having
from jointspace.data.manifest import Manifest, ManifestError
from jointspace.evaluate.retrieval import relevance_matrix
from jointspace.models.embedding import embed_items, item_inputs
from jointspace.models.joint import JointModel
from jointspace.models.tokens import Tokens
from jointspace.progress import logger


@dataclass
class MatchingSet:
    """One split as a matcher sees it: token states per modality, bi-encoder scores, matches."""

    modalities: tuple[str, str]
    tokens: dict[str, Tokens]
    scores: torch.Tensor  # [len(a), len(b)] bi-encoder similarities
    relevant: torch.Tensor  # [len(a), len(b)] bool
    left_out: int = 0  # rows lacking one of the two modalities (empty cells), not used

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
    """Embed and tokenise each unique value of both modalities once; score all pairs.

    Only rows holding both modalities are used (``left_out`` counts the others)."""
    a, b = modalities
    manifest, left_out = rows_having(manifest, (a, b))
    if not manifest.rows:
        raise ManifestError(f"{manifest.path}: no row has both {a} and {b} to match")
    if left_out:
        logger().warning("rerank: %s (%s)", left_out_note(left_out, (a, b)), manifest.path)
    values_a, values_b, relevant = relevance_matrix(manifest, a, b, relevance)
    tokens, embedded = {}, []
    for modality, values in ((a, values_a), (b, values_b)):
        inputs = item_inputs(manifest, modality, values)
        tokens[modality] = model.encode_tokens(inputs, modality, batch_size=batch_size)
        _, vectors = embed_items(model, manifest, modality, values, batch_size=batch_size)
        embedded.append(torch.from_numpy(vectors))
    scores = embedded[0] @ embedded[1].T
    return MatchingSet((a, b), tokens, scores, torch.from_numpy(relevant), left_out)
