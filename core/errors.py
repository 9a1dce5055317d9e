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


class StoreError(IndexUnavailableError):
    """The index folder cannot be used as it is: its files are damaged, or its disk is full."""

    @classmethod
    def damaged(cls, where: str, detail: str) -> StoreError:
        return cls(
            f"{where} is damaged ({detail}): restore it from a backup, or build again into a new folder "
            "(its files were left as they are)."
        )

    @classmethod
    def disk_full(cls, where: str) -> StoreError:
        return cls(
            f"The disk holding {where} is full (ENOSPC, no space left on device): the index is consistent, "
            "since only whole videos are written; free some space, then run the same command again to resume."
        )


class IndexLockedError(UserError):
    """Another build already holds the index."""


class SourceError(UserError):
    """The video source (folder, annotations file, CSV) cannot be used at all."""


class QueryError(UserError):
    """A search request that cannot be answered (empty text, bad k)."""
