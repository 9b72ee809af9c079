"""Run the app on a loopback port in a background thread, and drive its page in Chromium."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from jointspace.report.browser import FLAGS, find_chromium


@contextlib.contextmanager
def running_server(app: FastAPI, host: str = "127.0.0.1", timeout: float = 30) -> Iterator[str]:
    """Serve ``app`` on a free port; yields its base URL and stops the server afterwards."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def search_in_browser(
    url: str,
    query: str,
    screenshot: Path | None = None,
    timeout_ms: int = 30_000,
    rerank: int = 0,
) -> list[dict]:
    """Type ``query`` into the page, submit, wait for results; each card's media and caption.

    With ``rerank``, the page's re-rank control (shown only for a model with a matcher) is set.
    A card gives ``width`` (its image's natural width, once loaded) or ``audio`` (its player's
    source URL), ``rank`` ("#1"…), ``name`` (the item's caption, text or id) and ``caption``
    (label and score).
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=list(FLAGS))
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.goto(url)
            page.fill("#text", query)
            if rerank:
                page.wait_for_selector("#rerank-box:not([hidden])", timeout=timeout_ms)
                page.fill("#rerank", str(rerank))
            page.click("button[type=submit]")
            page.wait_for_selector(".hit", timeout=timeout_ms)
            page.wait_for_function(
                "[...document.querySelectorAll('.hit img')].every(i => i.complete)",
                timeout=timeout_ms,
            )
            hits = page.eval_on_selector_all(
                ".hit",
                "cards => cards.map(c => ({width: c.querySelector('img')?.naturalWidth ?? null,"
                " audio: c.querySelector('audio')?.getAttribute('src') ?? null,"
                " caption: c.querySelector('.score').textContent,"
                " name: c.querySelector('.name').textContent,"
                " rank: c.querySelector('.rank').textContent}))",
            )
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
            return hits
        finally:
            browser.close()
