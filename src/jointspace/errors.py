"""One base for every error a user can cause and fix; the CLI and the service catch only these."""

from __future__ import annotations


class JointspaceError(Exception):
    """A user-facing error: bad input, config, artifact or environment, with a one-line message."""


class ArtifactError(JointspaceError):
    """A file jointspace wrote earlier (model, checkpoint, index, cache) is missing or damaged."""


class DiskFullError(JointspaceError, OSError):
    """No space left while writing ``path``; what was there before is still intact."""
