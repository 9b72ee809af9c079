"""Headless Chromium: render a report page to a PNG, or dump the DOM it built."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from jointspace.errors import MissingPackageError

# Offline machines refuse Chromium's background connections; these flags keep it quiet.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str:
    """The Chromium executable, or a clear error saying how to install it."""
    for name in CANDIDATES:
        if path := shutil.which(name):
            return path
    raise MissingPackageError("headless Chromium not found: install Debian's `chromium` package")


def run_chromium(page: Path, *args: str, timeout: float = 120) -> str:
    """Run Chromium on ``page`` with extra arguments; its stdout (e.g. a DOM dump)."""
    with tempfile.TemporaryDirectory(prefix="jointspace-chromium-") as profile:
        command = [find_chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
        done = subprocess.run(
            [*command, page.resolve().as_uri()], capture_output=True, text=True, timeout=timeout
        )
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed on {page} ({done.returncode}): {done.stderr[-500:]}")
    return done.stdout


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 2400) -> Path:
    """Render ``page`` into a ``width`` × ``height`` PNG."""
    run_chromium(page, f"--screenshot={png.resolve()}", f"--window-size={width},{height}")
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {png}")
    return png


def dump_dom(page: Path) -> str:
    """The page's DOM after Chromium loaded it (images, layout and all)."""
    return run_chromium(page, "--dump-dom")
