"""The search service: FastAPI over one model and one index, both loaded once at start."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from jointspace.errors import ArtifactError, JointspaceError
from jointspace.index.build import indexed_media, media_path
from jointspace.matcher import SearchMatcher
from jointspace.runs import Run
from jointspace.serve.apidocs import add_offline_docs
from jointspace.serve.classify import add_classify_route, open_classifier
from jointspace.serve.middleware import AccessLog, BodyLimit
from jointspace.serve.probe import Probe
from jointspace.serve.query import SearchQuery, Upload, openapi_body, read_search
from jointspace.serve.schemas import Health, Item, SearchResponse, SearchResult
from jointspace.serve.uploads import UploadLimits, decode_upload
from jointspace.serve.workers import Workers

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
FORM_OVERHEAD = 64 * 1024  # room for the text fields and multipart framing beside one upload
log = logging.getLogger("jointspace.serve")


def create_app(
    model_dir: str | Path,
    index_uri: str,
    *,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    workers: int | None = None,
    max_pending: int = 256,
    limits: UploadLimits | None = None,
    overrides: Sequence[str] = (),
    classifier: str | Path | None = None,
) -> FastAPI:
    """An app serving ``/search``, ``/items/{id}``, ``/media/{id}``, ``/health`` and a web page;
    ``/classify`` answers with the classifier saved in run ``classifier`` (404 without one).

    Searches run ``workers`` at a time (default: the CPU count, at most 8) on their own threads,
    so health, items and media never queue behind embedding; past ``max_pending`` waiting or
    running searches, ``/search`` answers 503.
    """
    run = Run.open(model_dir, overrides)  # --set: the run's config for this service only
    index = run.open_index(index_uri)
    target, root = indexed_media(index)
    reranker = run.search_matcher(index)
    model, fingerprint = run.model, run.fingerprint
    # Queries are users' texts and uploads: caching their features would fill the disk with
    # one-off entries (and the cache is not written from several threads at once).
    model.feature_cache = None
    limits = limits or UploadLimits()
    probe = Probe(model)
    labeller = open_classifier(classifier)
    items = len(index)  # the service never writes, so the count is fixed
    work = Workers(workers or min(8, os.cpu_count() or 1), max_pending)
    page_html = (files("jointspace.serve") / "static" / "index.html").read_text()
    app = FastAPI(
        title="jointspace search",
        version="1",
        description=__doc__,
        docs_url=None,
        redoc_url=None,
    )
    add_offline_docs(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return page_html

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health(response: Response) -> Health:
        # No I/O and no queue: answers at once, however many searches are running.
        if probe.problem is not None:
            response.status_code = 503
        return Health(
            status="ok" if probe.problem is None else "error",
            problem=probe.problem,
            items=items,
            target=target,
            model=fingerprint,
            rerank=reranker.matcher.modalities if reranker else [],
            classify=list(labeller.modalities) if labeller else [],
        )

    @app.post(
        "/search",
        response_model=SearchResponse,
        openapi_extra={"requestBody": openapi_body()},
        responses={
            400: {"description": "no query, or more than one"},
            413: {"description": "an upload or the body over its limit"},
            415: {"description": "an upload of the wrong type, or an unknown body type"},
            422: {"description": "a bad field, filter or file"},
            503: {"description": "busy, or the model produces non-finite embeddings"},
        },
    )
    async def search(request: Request) -> SearchResponse:
        """Search with a text, an image or an audio query: a multipart form or a JSON body."""
        query, upload = await read_search(request, max_upload_bytes)
        modality = upload.field if upload else "text"
        if modality not in model.modalities:
            raise HTTPException(422, f"this model has no {modality} tower")
        if query.rerank and (reranker is None or not reranker.supports(modality)):
            raise HTTPException(422, _no_reranker(reranker, modality, target))
        busy = "too many searches in progress; retry shortly"
        return await work.run(run, query, upload, modality, busy=busy)

    def run(query: SearchQuery, upload: Upload | None, modality: str) -> SearchResponse:
        raw = query.text if upload is None else decode_upload(upload, limits)
        vector = model.encode([raw], modality)
        probe.check(vector, modality)
        where = (query.filter or "").strip() or None  # a blank filter box means no filter
        knobs = {"ef_search": query.ef_search, "nprobe": query.nprobe}
        given = {name: value for name, value in knobs.items() if value is not None}
        found = index.search(vector, max(query.k, query.rerank), where, **given)[0]
        ranked = [(hit, None) for hit in found]
        if query.rerank:
            ranked = reranker.rerank(modality, raw, found, query.rerank)
        results = [
            SearchResult(
                id=hit.id,
                rank=rank,
                score=hit.score,
                rerank_score=matched,
                metadata=hit.metadata,
                media=_media_url(hit.id, target),
            )
            for rank, (hit, matched) in enumerate(ranked[: query.k], start=1)
        ]
        return SearchResponse(query=modality, target=target, results=results)

    add_classify_route(app, labeller, work=work, max_upload=max_upload_bytes, limits=limits)

    @app.get("/items/{item_id:path}", response_model=Item, responses={404: {}})
    def item(item_id: str) -> Item:
        metadata = index.get([item_id]).get(item_id)
        if metadata is None:
            raise HTTPException(404, f"no item {item_id!r}")
        return Item(id=item_id, metadata=metadata, media=_media_url(item_id, target))

    @app.get("/media/{item_id:path}", responses={404: {}})
    def media(item_id: str) -> FileResponse:
        metadata = index.get([item_id]).get(item_id)
        # Ids, never paths, come from the client; the stored path must stay under the root.
        stored = None if metadata is None or target == "text" else metadata.get(target)
        path = media_path(root, stored) if isinstance(stored, str) else None
        if path is None:
            raise HTTPException(404, f"no media for item {item_id!r}")
        return FileResponse(path)

    @app.exception_handler(JointspaceError)
    async def user_error(_: Request, err: JointspaceError) -> JSONResponse:
        # A damaged artifact is the server's problem, not the request's.
        status = 503 if isinstance(err, ArtifactError) else 422
        return JSONResponse({"detail": str(err)}, status_code=status)

    app.add_middleware(BodyLimit, limit=max_upload_bytes + FORM_OVERHEAD)
    app.add_middleware(AccessLog)
    app.state.index, app.state.model, app.state.probe = index, model, probe
    app.state.model_dir, app.state.index_uri = Path(model_dir), index_uri
    app.state.classifier = labeller
    return app


def _no_reranker(reranker: SearchMatcher | None, query: str, target: str) -> str:
    if reranker is None:
        return "this model has no re-ranker: train one with `jointspace rerank MODEL_DIR`"
    return f"the re-ranker pairs {reranker.matcher.modalities}, not {query} with {target}"


def _media_url(item_id: str, target: str) -> str | None:
    # Every character but unreserved ones is escaped: '/' and '?' in ids stay part of the id.
    return None if target == "text" else f"/media/{quote(item_id, safe='')}"
