"""The search service: FastAPI over one model and one index, both loaded once at start."""

from __future__ import annotations

import io
import json
import logging
import time
from importlib.resources import files
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool

from jointspace.data.audio import AudioError, check_audio
from jointspace.data.image import ImageError, load_image
from jointspace.index import FilterError
from jointspace.index.build import indexed_media, media_path, open_for_model
from jointspace.models import load
from jointspace.models.io import model_fingerprint
from jointspace.serve.rerank import Reranker
from jointspace.serve.schemas import Health, Item, SearchResponse, SearchResult

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_K = 100
log = logging.getLogger("jointspace.serve")


def create_app(
    model_dir: str | Path, index_uri: str, *, max_upload_bytes: int = MAX_UPLOAD_BYTES
) -> FastAPI:
    """An app serving ``/search``, ``/items/{id}``, ``/media/{id}``, ``/health`` and a web page."""
    model = load(model_dir)
    fingerprint = model_fingerprint(model_dir)
    index = open_for_model(index_uri, fingerprint)
    target, root = indexed_media(index)
    reranker = Reranker.for_model(model, model_dir, target, root)
    page_html = (files("jointspace.serve") / "static" / "index.html").read_text()
    app = FastAPI(title="jointspace search", version="1", description=__doc__)

    @app.middleware("http")
    async def access_log(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        record = {
            "method": request.method,
            "path": request.url.path,
            "status": response.status_code,
            "ms": round(1000 * (time.perf_counter() - started), 2),
        }
        log.info(json.dumps(record))
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return page_html

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health(
            status="ok",
            items=len(index),
            target=target,
            model=fingerprint,
            rerank=reranker.matcher.modalities if reranker else [],
        )

    @app.post("/search", response_model=SearchResponse, responses={400: {}, 413: {}, 415: {}})
    async def search(
        text: Annotated[str | None, Form(max_length=1000)] = None,
        image: Annotated[UploadFile | None, File()] = None,
        audio: Annotated[UploadFile | None, File()] = None,
        k: Annotated[int, Form(ge=1, le=MAX_K)] = 10,
        filter: Annotated[str | None, Form(max_length=1000)] = None,
        rerank: Annotated[int, Form(ge=0, le=MAX_K)] = 0,
    ) -> SearchResponse:
        uploads = {"image": image, "audio": audio}
        query_modality, raw = await _read_query(model, text, uploads, max_upload_bytes)
        if rerank and (reranker is None or not reranker.supports(query_modality)):
            raise HTTPException(422, _no_reranker(reranker, query_modality, target))
        # CPU-bound work runs off the event loop, so /health and uploads keep being served.
        vector = await run_in_threadpool(model.encode, [raw], query_modality)
        try:
            found = await run_in_threadpool(index.search, vector, max(k, rerank), filter or None)
        except FilterError as err:
            raise HTTPException(400, str(err)) from None
        ranked = [(hit, None) for hit in found[0]]
        if rerank:
            ranked = await run_in_threadpool(reranker.rerank, query_modality, raw, found[0], rerank)
        results = [
            SearchResult(
                id=hit.id,
                score=hit.score,
                rerank_score=matched,
                metadata=hit.metadata,
                media=_media_url(hit.id, target),
            )
            for hit, matched in ranked[:k]
        ]
        return SearchResponse(query=query_modality, target=target, results=results)

    @app.get("/items/{item_id}", response_model=Item, responses={404: {}})
    def item(item_id: str) -> Item:
        metadata = index.get([item_id]).get(item_id)
        if metadata is None:
            raise HTTPException(404, f"no item {item_id!r}")
        return Item(id=item_id, metadata=metadata, media=_media_url(item_id, target))

    @app.get("/media/{item_id}", responses={404: {}})
    def media(item_id: str) -> FileResponse:
        metadata = index.get([item_id]).get(item_id)
        # Ids, never paths, come from the client; the stored path must stay under the root.
        path = None if metadata is None or target == "text" else media_path(root, metadata[target])
        if path is None:
            raise HTTPException(404, f"no media for item {item_id!r}")
        return FileResponse(path)

    @app.exception_handler(ValueError)
    async def bad_value(_: Request, err: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=422)

    app.state.index, app.state.model = index, model
    return app


def _no_reranker(reranker: Reranker | None, query: str, target: str) -> str:
    if reranker is None:
        return "this model has no re-ranker: train one with `jointspace rerank MODEL_DIR`"
    return f"the re-ranker pairs {reranker.matcher.modalities}, not {query} with {target}"


async def _read_query(model, text: str | None, uploads: dict, limit: int):
    given = {m: f for m, f in uploads.items() if f is not None}
    if text is not None and text.strip():
        given["text"] = text
    if len(given) != 1:
        raise HTTPException(
            400, "give exactly one query: a non-empty 'text', an 'image' or an 'audio' file"
        )
    ((modality, query),) = given.items()
    if modality == "text":
        return "text", text
    if query.content_type is None or not query.content_type.startswith(f"{modality}/"):
        raise HTTPException(
            415, f"'{modality}' must be an {modality} file, got {query.content_type!r}"
        )
    data = await query.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"{modality} larger than {limit} bytes")
    try:
        decoded = DECODERS[modality](data)
    except (ImageError, AudioError, OSError) as err:
        raise HTTPException(422, f"unreadable {modality}: {err}") from None
    if modality not in model.modalities:
        raise HTTPException(422, f"this model has no {modality} tower")
    return modality, decoded


def _decode_audio(data: bytes) -> bytes:
    check_audio(data)
    return data


DECODERS = {"image": lambda data: load_image(Image.open(io.BytesIO(data))), "audio": _decode_audio}


def _media_url(item_id: str, target: str) -> str | None:
    return None if target == "text" else f"/media/{quote(item_id, safe='')}"
