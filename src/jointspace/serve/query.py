"""A ``POST /search`` body, from a multipart/urlencoded form or JSON, validated the same way."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

MAX_K = 100
MAX_CHARS = 1000
MAX_TUNING = 65_536  # ef_search / nprobe: past this a query costs more than an exact scan
FILES = ("image", "audio")
Fields = TypeVar("Fields", bound=BaseModel)
ONE_QUERY = "give exactly one query: a non-empty 'text', an 'image' or an 'audio' file"


class SearchQuery(BaseModel):
    """The fields of a search besides its uploads."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, max_length=MAX_CHARS, description="a text query")
    k: int = Field(10, ge=1, le=MAX_K, description="how many results")
    filter: str | None = Field(None, max_length=MAX_CHARS, description='e.g. split == "test"')
    rerank: int = Field(0, ge=0, le=MAX_K, description="re-score this many with the matcher")
    ef_search: int | None = Field(
        None, ge=1, le=MAX_TUNING, description="HNSW: candidates explored (default: tuned)"
    )
    nprobe: int | None = Field(
        None, ge=1, le=MAX_TUNING, description="IVF-PQ: lists probed (default: tuned)"
    )


class JsonSearch(SearchQuery):
    """A JSON search body: the form's fields, with uploads as base64 strings."""

    image: str | None = Field(None, description="an image file, base64-encoded")
    audio: str | None = Field(None, description="a WAV/FLAC/OGG file, base64-encoded")


class FormSearch(SearchQuery):
    """A multipart search body (the page and ``curl -F`` send this)."""

    image: bytes | None = Field(None, json_schema_extra={"format": "binary"})
    audio: bytes | None = Field(None, json_schema_extra={"format": "binary"})


@dataclass
class Upload:
    """An uploaded query file: the field it came in, its name and declared type, its bytes."""

    field: str
    filename: str
    content_type: str | None
    data: bytes

    @property
    def name(self) -> str:
        return f"{self.field} upload {self.filename!r}" if self.filename else f"{self.field} upload"


def openapi_body() -> dict[str, Any]:
    """The request body's OpenAPI entry: JSON and multipart, both documented."""
    form = {"schema": flat_schema(FormSearch)}
    return {
        "required": True,
        "content": {
            "application/json": {"schema": flat_schema(JsonSearch)},
            "multipart/form-data": form,
            "application/x-www-form-urlencoded": {"schema": flat_schema(SearchQuery)},
        },
    }


async def read_search(request: Request, max_upload: int) -> tuple[SearchQuery, Upload | None]:
    """The validated fields and the one upload (if any); 4xx for anything else."""
    fields, uploads = await read_body(request, max_upload, what="search")
    query = validate(SearchQuery, fields)
    has_text = query.text is not None and query.text.strip() != ""
    if len(uploads) + has_text != 1:
        raise HTTPException(400, ONE_QUERY)
    check_uploads(uploads, max_upload)
    return query, (uploads[0] if uploads else None)


async def read_body(
    request: Request, max_upload: int, *, what: str, example: str = '{"text": "a cat", "k": 5}'
) -> tuple[dict[str, Any], list[Upload]]:
    """A form's or JSON body's fields and uploads, unvalidated; 415 for another body type."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        return _from_json(await request.body(), example)
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await _from_form(request, max_upload)
    if kind == "" and not await request.body():
        return {}, []  # no body at all: answered as "no query" by the caller
    raise HTTPException(
        415,
        f"send the {what} as multipart/form-data, application/x-www-form-urlencoded or "
        f"application/json, not {kind or 'a body without a content type'!r}",
    )


def validate(model: type[Fields], fields: dict[str, Any]) -> Fields:
    """``fields`` as ``model``; a 422 listing every bad field, as FastAPI's own would."""
    try:
        return model.model_validate(fields)
    except ValidationError as err:
        errors = err.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def check_uploads(uploads: list[Upload], max_upload: int) -> None:
    """413 for an upload over ``max_upload`` bytes, 415 for one declared as another type."""
    for upload in uploads:
        if len(upload.data) > max_upload:
            raise HTTPException(413, f"{upload.name} is larger than {max_upload} bytes")
        if upload.content_type is not None and not upload.content_type.startswith(
            f"{upload.field}/"
        ):
            raise HTTPException(
                415, f"'{upload.field}' must be an {upload.field} file, got {upload.content_type!r}"
            )


def _from_json(body: bytes, example: str) -> tuple[dict[str, Any], list[Upload]]:
    try:
        payload = json.loads(body)
    except RecursionError:
        raise HTTPException(422, "the JSON body is nested too deeply") from None
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise HTTPException(422, f"the body is not valid JSON: {err}") from None
    if not isinstance(payload, dict):
        raise HTTPException(422, f"the JSON body must be an object, e.g. {example}")
    uploads = []
    for field in FILES:
        value = payload.pop(field, None)
        if value is None:
            continue
        if not isinstance(value, str):
            raise HTTPException(422, f"'{field}' must be a base64 string of the file")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(422, f"'{field}' is not valid base64") from None
        uploads.append(Upload(field, "", None, data))
    return payload, uploads


async def _from_form(request: Request, max_upload: int) -> tuple[dict[str, Any], list[Upload]]:
    # Part counts are bounded so a form of a million tiny fields cannot exhaust memory.
    form = await request.form(max_files=len(FILES), max_fields=16, max_part_size=64 * 1024)
    fields: dict[str, Any] = {}
    uploads = []
    for key in dict.fromkeys(form.keys()):
        values = form.getlist(key)
        if len(values) > 1:
            raise HTTPException(422, f"the form field {key!r} was given {len(values)} times")
        value = values[0]
        if key in FILES:
            if value == "":
                continue  # an empty field, as a form with no file chosen may send
            if not isinstance(value, UploadFile):
                raise HTTPException(422, f"'{key}' must be a file upload, not a text field")
            data = await value.read(max_upload + 1)
            if data or value.filename:  # a form's empty file input sends a nameless empty part
                uploads.append(Upload(key, value.filename or "", value.content_type, data))
        elif isinstance(value, UploadFile):
            raise HTTPException(422, f"'{key}' must be a text field, not a file")
        else:
            fields[key] = value
    return fields, uploads


def flat_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    return schema
