"""Errors of the data path, split by what the worker does about them.

- `JobCancelled`: the cancel event was set; the worker releases the job (or lets go of it
  when it was paused). Not a failure.
- `TransientError`: worth another try later (source or output briefly unavailable); the
  worker puts the job back with a not-before time, within the attempt budget.
- Any other `DataprepError`: the job fails with this message.
"""
from __future__ import annotations


class DataprepError(Exception):
    """The job could not be done."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class JobCancelled(DataprepError):
    """The job was cancelled."""


class TransientError(DataprepError):
    """A temporary failure; the job may succeed if tried again later."""


class FileModified(TransientError):
    """A source file changed while the pack was reading it.

    Transient: the bytes already streamed cannot be taken back, so this run fails, but
    the next attempt's pre-read check sees the change first and skips the file.
    """


class NoContent(DataprepError):
    """The job has nothing to pack."""


class SourceError(DataprepError):
    """The source cannot be read."""


class OutputError(DataprepError):
    """The output cannot be written."""


class DagNotReady(DataprepError):
    """The directory DAG is not ready: no file has been packed yet."""
