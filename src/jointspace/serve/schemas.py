"""Response schemas of the search service (they make its OpenAPI document)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class SearchResult(BaseModel):
    id: str
    score: float
    metadata: dict[str, Any]
    media: str | None = None


class SearchResponse(BaseModel):
    query: str
    target: str
    results: list[SearchResult]


class Item(BaseModel):
    id: str
    metadata: dict[str, Any]
    media: str | None = None


class Health(BaseModel):
    status: str
    items: int
    target: str
    model: str
