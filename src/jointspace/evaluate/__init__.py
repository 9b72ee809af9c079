"""Evaluation: pure metrics and evaluators that embed a manifest with a model."""

from jointspace.evaluate.errors import EvaluationError
from jointspace.evaluate.metrics import chance_metrics, ranking_stats, retrieval_metrics
from jointspace.evaluate.retrieval import (
    RetrievalEvaluator,
    chance_retrieval,
    evaluate_model,
    evaluate_retrieval,
    relevance_matrix,
)

__all__ = [
    "EvaluationError",
    "RetrievalEvaluator",
    "chance_metrics",
    "chance_retrieval",
    "evaluate_model",
    "evaluate_retrieval",
    "ranking_stats",
    "relevance_matrix",
    "retrieval_metrics",
]
