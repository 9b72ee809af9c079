"""The user-facing error of evaluation: empty splits, NaN embeddings, nothing to score."""

from __future__ import annotations

from jointspace.errors import JointspaceError


class EvaluationError(JointspaceError, ValueError):
    """Evaluation cannot give a meaningful number for this input; the message says why."""
