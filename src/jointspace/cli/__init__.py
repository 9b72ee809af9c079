"""The ``jointspace`` command line (the console script runs ``jointspace.cli:main``)."""

from jointspace.cli.main import app, main

__all__ = ["app", "main"]
