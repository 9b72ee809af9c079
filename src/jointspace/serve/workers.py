"""Blocking model work on a bounded set of threads, refused with 503 past a queue limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from fastapi import HTTPException

T = TypeVar("T")


class Workers:
    """Runs calls ``size`` at a time on their own threads; past ``max_pending`` calls waiting or
    running, new ones answer 503 at once, so a burst cannot queue without bound."""

    def __init__(self, size: int, max_pending: int):
        self.limiter = anyio.CapacityLimiter(size)
        self.max_pending, self.pending = max_pending, 0

    async def run(self, call: Callable[..., T], *args: Any, busy: str) -> T:
        """``call(*args)`` on a worker thread; 503 with ``busy`` when too many are pending."""
        if self.pending >= self.max_pending:
            raise HTTPException(503, busy)
        self.pending += 1
        try:
            return await anyio.to_thread.run_sync(call, *args, limiter=self.limiter)
        finally:
            self.pending -= 1
