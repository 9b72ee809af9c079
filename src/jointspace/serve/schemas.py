"""Response schemas of the search service (they make its OpenAPI document)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Item(BaseModel):
    """An indexed item: its id, stored metadata and, for files, the URL of its media."""

    id: str
    metadata: dict[str, Any]
    media: str | None = None


class SearchResult(Item):
    rank: int  # 1 for the best result
    score: float
    rerank_score: float | None = None  # the matcher's score, when the result was re-ranked


class SearchResponse(BaseModel):
    query: str
    target: str
    results: list[SearchResult]


class Health(BaseModel):
    status: str  # "ok", or "error" with the reason in ``problem`` (HTTP 503)
    problem: str | None = None
    items: int
    target: str
    model: str
    rerank: list[str] = []  # the modalities the re-ranker pairs; empty without one
    classify: list[str] = []  # the modalities the served classifier takes; empty without one


class LabelScore(BaseModel):
    label: str
    score: float  # the classifier's probability of ``label``


class ClassifyResponse(BaseModel):
    label: str  # the best class
    scores: list[LabelScore]  # best first, top_k of them
    used: list[str]  # the modalities the prediction drew on
    classifier: str  # the classifier's fingerprint
