"""One base for every error a user can cause and fix; the CLI and the service catch only these."""

from __future__ import annotations


class JointspaceError(Exception):
    """A user-facing error: bad input, config, artifact or environment, with a one-line message."""

    def __str__(self) -> str:
        # A KeyError subclass would print its message's repr, quotes and escapes included.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class ArtifactError(JointspaceError):
    """A file jointspace wrote earlier (model, checkpoint, index, cache) is missing or damaged."""


class DiskFullError(JointspaceError, OSError):
    """No space left while writing ``path``; what was there before is still intact."""


class InputError(JointspaceError, ValueError):
    """An argument or input value that cannot be used; the message names it and what would do."""


class InputTypeError(JointspaceError, TypeError):
    """An input of a type that cannot be used, e.g. a number where text is encoded."""


class UnknownNameError(JointspaceError, KeyError):
    """A name (objective, modality, dataset …) nothing answers to; the message lists the known."""


class NotFoundError(JointspaceError, FileNotFoundError):
    """A path the user gave holds nothing jointspace can use (no model, checkpoint, run …)."""


class MissingPackageError(JointspaceError, ImportError):
    """An optional package (pip or system) is not installed; the message says how to install it."""
