"""Bad input on the command line: one clear red line and exit code 1, never a stack trace."""

from __future__ import annotations

import errno
import functools
import os

import typer
from rich.console import Console
from rich.markup import escape

from jointspace.errors import JointspaceError

# A user can fix a JointspaceError (a missing optional package too) or an OSError naming a file.
# Anything else (ValueError, KeyError, TypeError, …) is a bug: it keeps its traceback.
USER_ERRORS = (JointspaceError, OSError)
console = Console(stderr=True)


def error_message(err: BaseException) -> str:
    """One line for ``err``: OS errors name the file, a full disk says where it was writing."""
    # Some messages (YAML parser errors, a manifest's bad rows) span lines: the CLI promises one.
    line = ""
    for part in (p.strip() for p in _message(err).splitlines()):
        if part:
            line += ("" if not line else " " if line.endswith(":") else "; ") + part
    return line


def _message(err: BaseException) -> str:
    if isinstance(err, JointspaceError):
        return str(err)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return f"no space left on device writing {err.filename or 'a file'}"
    if isinstance(err, OSError) and err.filename is not None:
        target = f"{err.filename} → {err.filename2}" if err.filename2 else f"{err.filename}"
        return f"{err.strerror or type(err).__name__}: {target}"
    return str(err) or type(err).__name__


def user_errors(command):
    """Wrap a command so user errors print as ``error: …`` and exit with code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as err:
            # escape: a message may hold "[...]" (lists, paths) that rich would read as markup.
            line = f"[bold red]error{_rank()}:[/] {escape(error_message(err))}"
            console.print(line, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def _rank() -> str:
    # Under torchrun each process reports its own error; ranks after the first say which they are.
    rank = os.environ.get("RANK", "0") if os.environ.get("WORLD_SIZE", "1") != "1" else "0"
    return "" if rank == "0" else f" (rank {rank})"
