"""Errors an index raises for a user to act on; each names the index and what to do."""

from __future__ import annotations

from jointspace.errors import ArtifactError, JointspaceError

REBUILD = "rebuild it with `jointspace index build MODEL_DIR --data DATA --index {uri} --force`"


class IndexUriError(JointspaceError, ValueError):
    """An index URI or URI option that cannot be used."""


class IndexNotFoundError(JointspaceError, FileNotFoundError):
    """No index where the URI points."""


class DamagedIndexError(ArtifactError):
    """An index file is missing, damaged, or does not match the others."""

    def __init__(self, uri: str, problem: str):
        super().__init__(f"index {uri} is damaged: {problem}; {REBUILD.format(uri=uri)}")


class OldFormatError(ArtifactError):
    """A folder written before format 2 (``index.faiss``): it must be rebuilt."""

    def __init__(self, uri: str):
        super().__init__(
            f"index {uri} is in the old format 1 (index.faiss), which this version no longer "
            f"reads; {REBUILD.format(uri=uri)}"
        )


class IndexLockedError(JointspaceError):
    """Another process is writing the index."""


class ReadOnlyIndexError(JointspaceError):
    """A change was asked of an index opened for reading."""


class NotAnIndexError(JointspaceError):
    """The URI names a folder or file that holds something other than an index."""


class BackendError(JointspaceError):
    """The index back-end (Milvus) failed or cannot be reached."""


class IndexMismatchError(JointspaceError, ValueError):
    """The index holds vectors of another dimension than asked for."""
