"""Errors of the storage layer, split by what the caller does about them."""
from __future__ import annotations


class StorageError(Exception):
    """The database could not be used."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class BadDatabaseUrl(StorageError):
    """The database URL is not one pieceworks understands."""


class DatabaseUnavailable(StorageError):
    """The database server cannot be reached."""


class SchemaTooOld(StorageError):
    """The database schema is older than this program; run `runner.py db upgrade`."""


class SchemaTooNew(StorageError):
    """The database schema is newer than this program; upgrade pieceworks."""


class NotFound(StorageError):
    """The named object does not exist."""


class Conflict(StorageError):
    """The request conflicts with the current state (for example: jobs still running)."""
