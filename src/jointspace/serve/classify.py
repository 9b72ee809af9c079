"""``POST /classify``: a served classifier answers from any subset of text, image and audio."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from jointspace.serve.query import (
    MAX_CHARS,
    MAX_K,
    Upload,
    check_uploads,
    flat_schema,
    read_body,
    validate,
)
from jointspace.serve.schemas import ClassifyResponse, LabelScore
from jointspace.serve.uploads import UploadLimits, decode_upload
from jointspace.serve.workers import Workers

if TYPE_CHECKING:
    from jointspace.runs.classify import Classifier

NO_INPUT = "give at least one input: a non-empty 'text', an 'image' or an 'audio' file"
NO_CLASSIFIER = (
    "this service has no classifier: start it with "
    "`jointspace serve MODEL --index URI --classifier RUN` (a run of `jointspace classify`)"
)


class ClassifyFields(BaseModel):
    """The fields of a classification besides its uploads."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(
        None, max_length=MAX_CHARS, description="a text input, e.g. a question"
    )
    top_k: int = Field(5, ge=1, le=MAX_K, description="how many classes to score, best first")


class JsonClassify(ClassifyFields):
    """A JSON body: the form's fields, with uploads as base64 strings."""

    image: str | None = Field(None, description="an image file, base64-encoded")
    audio: str | None = Field(None, description="a WAV/FLAC/OGG file, base64-encoded")


class FormClassify(ClassifyFields):
    """A multipart body (the page and ``curl -F`` send this): any of text, image and audio."""

    image: bytes | None = Field(None, json_schema_extra={"format": "binary"})
    audio: bytes | None = Field(None, json_schema_extra={"format": "binary"})


def classify_body() -> dict[str, Any]:
    """The request body's OpenAPI entry: JSON and multipart, both documented."""
    return {
        "required": True,
        "content": {
            "application/json": {"schema": flat_schema(JsonClassify)},
            "multipart/form-data": {"schema": flat_schema(FormClassify)},
            "application/x-www-form-urlencoded": {"schema": flat_schema(ClassifyFields)},
        },
    }


async def read_classify(
    request: Request, max_upload: int
) -> tuple[ClassifyFields, list[Upload], list[str]]:
    """The validated fields, the uploads and the modalities given (400 when none is)."""
    fields, uploads = await read_body(
        request, max_upload, what="classification", example='{"text": "is it even?"}'
    )
    query = validate(ClassifyFields, fields)
    given = [u.field for u in uploads]
    if query.text is not None and query.text.strip():
        given.insert(0, "text")
    if not given:
        raise HTTPException(400, NO_INPUT)
    check_uploads(uploads, max_upload)
    return query, uploads, given


def add_classify_route(
    app: FastAPI,
    classifier: Classifier | None,
    *,
    work: Workers,
    max_upload: int,
    limits: UploadLimits,
) -> None:
    """Add ``POST /classify`` to ``app``: 404 without a ``classifier``, else its predictions."""

    @app.post(
        "/classify",
        response_model=ClassifyResponse,
        openapi_extra={"requestBody": classify_body()},
        responses={
            400: {"description": "no input"},
            404: {"description": "the service has no classifier (start it with --classifier)"},
            413: {"description": "an upload or the body over its limit"},
            415: {"description": "an upload of the wrong type, or an unknown body type"},
            422: {"description": "a bad field or file, or a modality the classifier lacks"},
            503: {"description": "busy"},
        },
    )
    async def classify(request: Request) -> ClassifyResponse:
        """Classify one example from any of its text, image and audio: a form or a JSON body."""
        if classifier is None:
            raise HTTPException(404, NO_CLASSIFIER)
        query, uploads, given = await read_classify(request, max_upload)
        lacking = [m for m in given if m not in classifier.modalities]
        if lacking:
            raise HTTPException(
                422,
                f"this classifier takes {', '.join(classifier.modalities)}; "
                f"not {', '.join(lacking)}",
            )
        busy = "too many requests in progress; retry shortly"
        return await work.run(predict, query, uploads, busy=busy)

    def predict(query: ClassifyFields, uploads: list[Upload]) -> ClassifyResponse:
        assert classifier is not None  # checked before the request was queued
        inputs: dict[str, Any] = {u.field: decode_upload(u, limits) for u in uploads}
        if query.text is not None and query.text.strip():
            inputs["text"] = query.text
        top_k = min(query.top_k, len(classifier.classes))
        found = classifier.predict(inputs, top_k=top_k)
        return ClassifyResponse(
            label=found.label,
            scores=[LabelScore(label=label, score=score) for label, score in found.scores],
            used=list(found.used),
            classifier=classifier.fingerprint,
        )


def open_classifier(path: str | Path | None) -> Classifier | None:
    """The classifier saved in run ``path``, or None without one (loaded only when asked for)."""
    if path is None:
        return None
    from jointspace.runs.classify import Classifier

    return Classifier.open(path)
