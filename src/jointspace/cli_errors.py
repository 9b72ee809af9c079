"""Bad input on the command line: one clear red line and exit code 1, never a stack trace."""

from __future__ import annotations

import functools

import typer
from rich.console import Console

from jointspace.config import ConfigError
from jointspace.data import ImageError, ManifestError
from jointspace.errors import JointspaceError

USER_ERRORS = (
    JointspaceError,
    ConfigError,
    ManifestError,
    ImageError,
    FileNotFoundError,
    FileExistsError,
    ValueError,
    KeyError,
)
console = Console(stderr=True)


def user_errors(command):
    """Wrap a command so user errors print as ``error: …`` and exit with code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper
