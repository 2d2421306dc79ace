"""Connecting to the database named by one URL, and the one dialect switch.

URLs:
  sqlite:///relative/path.db      (three slashes: relative to the working directory)
  sqlite:////absolute/path.db     (four slashes: absolute)
  sqlite:///:memory:              (tests only: one connection, no WAL)
  postgresql://user:password@host:port/dbname   (also postgres://)

The dialect is worked out once, here. Every storage operation then keeps its PostgreSQL
and SQLite forms side by side and branches on `db.dialect`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Literal
from urllib.parse import unquote, urlsplit

import peewee as pw

from storage.errors import BadDatabaseUrl, DatabaseUnavailable
from storage.models import database_proxy

Dialect = Literal["sqlite", "postgres"]

SQLITE_BUSY_TIMEOUT_MS = 10_000
PG_CONNECT_TIMEOUT_S = 5


def redact(url: str) -> str:
    """The URL with its password replaced by `***`, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


@dataclass
class Database:
    """A connected database: the peewee object, its dialect, and its URL for messages."""

    pw: pw.Database
    dialect: Dialect
    url: str  # redacted

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgres"

    def atomic(self) -> pw._atomic:
        """A transaction (SQLite: BEGIN IMMEDIATE, so writers queue instead of deadlocking)."""
        return self.pw.atomic()

    @contextlib.contextmanager
    def connection(self) -> Iterator[None]:
        """Open this thread's connection if needed (peewee keeps one per thread)."""
        self.pw.connect(reuse_if_open=True)
        yield

    def close(self) -> None:
        """Close this thread's connection."""
        if not self.pw.is_closed():
            self.pw.close()


def parse_url(url: str) -> tuple[Dialect, dict]:
    """Split a database URL into its dialect and the arguments for peewee."""
    if not url or "://" not in url:
        raise BadDatabaseUrl(f"bad database URL {redact(url)!r}: expected sqlite:///PATH or "
                             "postgresql://USER@HOST:PORT/DB")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise BadDatabaseUrl(f"bad database URL {url!r}: expected sqlite:///PATH")
        path = rest[1:]
        return "sqlite", {"database": unquote(path)}
    if scheme in ("postgresql", "postgres"):
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise BadDatabaseUrl(f"bad database URL {redact(url)!r}: {exc}") from exc
        dbname = parts.path.lstrip("/")
        if not dbname:
            raise BadDatabaseUrl(f"bad database URL {redact(url)!r}: no database name")
        kwargs: dict = {"database": unquote(dbname), "host": parts.hostname or "localhost",
                        "port": port or 5432}
        if parts.username:
            kwargs["user"] = unquote(parts.username)
        if parts.password:
            kwargs["password"] = unquote(parts.password)
        return "postgres", kwargs
    raise BadDatabaseUrl(f"bad database URL {redact(url)!r}: unknown scheme {scheme!r} "
                         "(use sqlite:/// or postgresql://)")


def connect(url: str, *, check: bool = True) -> Database:
    """Connect to `url` and bind every model to it.

    Raises:
        BadDatabaseUrl: the URL is malformed.
        DatabaseUnavailable: the server or file cannot be opened (message names the URL).
    """
    dialect, kwargs = parse_url(url)
    if dialect == "sqlite":
        path = kwargs["database"]
        pragmas: dict = {"foreign_keys": 1, "busy_timeout": SQLITE_BUSY_TIMEOUT_MS}
        if path != ":memory:":
            pragmas |= {"journal_mode": "wal", "synchronous": "normal"}
        peewee_db: pw.Database = pw.SqliteDatabase(
            path, pragmas=pragmas, lock_type="IMMEDIATE",
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    else:
        peewee_db = pw.PostgresqlDatabase(connect_timeout=PG_CONNECT_TIMEOUT_S, **kwargs)
    db = Database(pw=peewee_db, dialect=dialect, url=redact(url))
    database_proxy.initialize(peewee_db)
    if check:
        try:
            peewee_db.connect(reuse_if_open=True)
            peewee_db.execute_sql("SELECT 1")
        except (pw.OperationalError, pw.DatabaseError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseUnavailable(f"cannot open database {db.url}: {reason}") from exc
    return db
