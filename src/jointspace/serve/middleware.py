"""Pure-ASGI middleware: a request-body limit enforced while bytes arrive, and JSON access logs."""

from __future__ import annotations

import json
import logging
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("jointspace.serve.access")


class BodyLimit:
    """Answer 413 for a body over ``limit`` bytes: at once from Content-Length, else mid-stream.

    Bodies are counted as they arrive, so a chunked upload is cut off after ``limit`` bytes
    instead of being spooled to disk first.
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _reply(send, 413, self._message())
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Raised inside the endpoint's body read, so the app answers it as a 413.
                    # Closing tells the server to stop reading (and discarding) the rest.
                    raise HTTPException(413, self._message(), headers={"connection": "close"})
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"request body larger than the limit of {self.limit} bytes"


class AccessLog:
    """Logs one JSON line per request: method, path, status, ms and client."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            record = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "ms": round(1000 * (time.perf_counter() - started), 2),
                "client": f"{client[0]}:{client[1]}" if client else None,
            }
            access_log.info(json.dumps(record))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
