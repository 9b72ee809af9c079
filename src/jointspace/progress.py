"""Progress for long jobs: a bar on a terminal, plain log lines everywhere else.

Library messages go to the ``jointspace`` logger. Like Hugging Face libraries, the first job
gives it a stderr handler at INFO unless the application configured it (a handler or a level
on ``jointspace``); silence it with ``logging.getLogger("jointspace").setLevel("WARNING")``,
``disable_default_handler()``, or ``progress=False`` in the training config.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

LOGGER = "jointspace"
_default: logging.Handler | None = None


def logger() -> logging.Logger:
    """The library logger, with the default stderr handler installed on first use."""
    log = logging.getLogger(LOGGER)
    global _default
    if _default is None and not log.handlers and log.level == logging.NOTSET:
        _default = _StderrHandler()
        _default.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(_default)
        log.setLevel(logging.INFO)
        log.propagate = False  # the root handlers (e.g. logging.basicConfig) would repeat lines
    return log


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (pytest, notebooks swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def disable_default_handler() -> None:
    """Remove the default handler; records then propagate to the application's handlers."""
    global _default
    log = logging.getLogger(LOGGER)
    if _default is not None:
        log.removeHandler(_default)
        log.setLevel(logging.NOTSET)
        log.propagate = True
        _default = False  # type: ignore[assignment]  # never reinstall it


def is_terminal() -> bool:
    """Whether stderr is an interactive terminal (where a live bar makes sense)."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


class Progress:
    """A step counter shown as a bar on a terminal or as a line every ``every`` steps."""

    def __init__(self, total: int, initial: int, desc: str, *, enabled: bool, every: int):
        self.total, self.step, self.desc = total, initial, desc
        self.enabled, self.every = enabled, max(1, every)
        self.bar_mode = enabled and is_terminal()
        self.log = logger()
        self.bar = tqdm(
            total=total, initial=initial, desc=desc, unit="step", disable=not self.bar_mode
        )

    @contextlib.contextmanager
    def active(self) -> Iterator[Progress]:
        """Route log lines above the bar while it is shown; close it at the end."""
        with contextlib.ExitStack() as stack:
            if self.bar_mode:
                stack.enter_context(logging_redirect_tqdm(loggers=[self.log]))
            stack.callback(self.bar.close)
            yield self

    def update(self, step: int, fields: dict[str, str]) -> None:
        self.step = step
        if self.bar_mode:
            self.bar.update(1)
            self.bar.set_postfix(fields, refresh=False)
        elif self.enabled and (step % self.every == 0 or step == self.total):
            shown = "  ".join(f"{k} {v}" for k, v in fields.items())
            self.log.info("%s step %d/%d  %s", self.desc, step, self.total, shown)

    def info(self, message: str, *args) -> None:
        """A milestone line (epoch end, evaluation): shown in both modes unless disabled."""
        if self.enabled:
            self.log.info(message, *args)


@contextlib.contextmanager
def item_progress(
    total: int | None, desc: str, *, unit: str = "item", enabled: bool = True
) -> Iterator[Callable[[int], None]]:
    """An ``advance(count)`` for a job over items: a bar on a terminal; otherwise an INFO line at
    every tenth of ``total`` (every 10,000 items when the total is unknown)."""
    if not enabled:
        yield lambda count: None
        return
    if is_terminal():
        with tqdm(total=total, desc=desc, unit=unit) as bar:
            yield bar.update
        return
    log = logger()  # the library's stderr handler, unless the application configured logging
    state = {"done": 0, "next": 0}
    every = max(1, total // 10) if total is not None else 10_000
    shown = "?" if total is None else str(total)

    def advance(count: int) -> None:
        state["done"] += count
        if state["done"] >= state["next"] or state["done"] == total:
            log.info("%s: %d/%s", desc, state["done"], shown)
            state["next"] = state["done"] + every

    yield advance
