"""Errors a user can cause and fix.

Anything deriving from `UserError` carries one sentence that says what went wrong and what to
do; the CLI prints it without a stack trace and the dashboard shows it as a message. Every other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment, explained in one sentence."""


class ModelError(UserError):
    """The CLIP model could not be resolved or loaded (unknown name, missing or bad weights)."""


class IndexUnavailableError(UserError):
    """The index is missing, or was built with another model than the one requested."""


class IndexLockedError(UserError):
    """Another build already holds the index."""


class SourceError(UserError):
    """The video source (folder, annotations file, CSV) cannot be used at all."""


class QueryError(UserError):
    """A search request that cannot be answered (empty text, bad k)."""
