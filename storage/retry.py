"""Retrying a whole database transaction on the errors that a second try can fix.

Retried (each attempt runs the whole function again, so a transaction is never half-retried):
- PostgreSQL serialization failures and deadlocks (SQLSTATE 40001, 40P01);
- SQLite `database is locked` / `database table is locked` (the busy timeout ran out);
- a dropped connection (server restart, network cut, `terminating connection due to
  administrator command`): the peewee connection of this thread is closed, so the next
  attempt opens a fresh one.

Every other error is raised at once. Driver errors that escape are wrapped in
`storage.errors` classes (`DatabaseUnavailable` for a lost connection, `StorageError` for the
rest) with the driver error as `__cause__`. Errors that are not driver errors (for example
an exception raised by a caller's `apply` callback) pass through untouched.

The backoff is capped exponential with full jitter. `stop`, a predicate polled while
waiting, lets a shutting-down caller give up within a few milliseconds instead of sleeping
through the backoff.
"""
from __future__ import annotations

import functools
import random
import sqlite3
import threading
import time
from enum import Enum
from typing import Callable, ParamSpec, TypeVar

import peewee as pw
import psycopg2
from loguru import logger

from storage.db import Database
from storage.errors import DatabaseUnavailable, StorageError
from storage.models import database_proxy

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_ATTEMPTS = 10
BASE_DELAY_S = 0.05
MAX_DELAY_S = 2.0
_STOP_POLL_S = 0.02

_local = threading.local()  # .depth: how many with_retry calls this thread is inside

# SQLSTATEs that mean "try the same transaction again". 26000: a prepared statement of
# ours vanished from the session (a pooler's DISCARD ALL); the retry prepares it again.
_RETRY_SQLSTATES = {"40001", "40P01", "26000"}
# SQLSTATE classes/codes that mean the connection is gone or the server is (re)starting.
_CONNECTION_SQLSTATE_PREFIXES = ("08",)
_CONNECTION_SQLSTATES = {"57P01", "57P02", "57P03"}
_SQLITE_BUSY_TEXT = ("database is locked", "database table is locked")


class Verdict(Enum):
    """What to do about one error."""

    RAISE = "raise"
    RETRY = "retry"
    RECONNECT = "reconnect"


def _chain(exc: BaseException) -> list[BaseException]:
    """The error, and the driver errors peewee wrapped inside it."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or any(cur is s for s in seen) or len(seen) > 8:
            continue
        seen.append(cur)
        todo.extend([cur.__cause__, cur.__context__])
        todo.extend(a for a in getattr(cur, "args", ()) if isinstance(a, BaseException))
    return seen


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind `exc` (peewee wraps the driver's error), if any."""
    return next((code for err in _chain(exc) if (code := getattr(err, "pgcode", None))), None)


def classify(exc: BaseException) -> Verdict:
    """Decide whether `exc` is worth another attempt (a pure function, tested on its own)."""
    chain = _chain(exc)
    for err in chain:
        code = getattr(err, "pgcode", None)
        if code in _RETRY_SQLSTATES:
            return Verdict.RETRY
        if code in _CONNECTION_SQLSTATES or (code and code.startswith(_CONNECTION_SQLSTATE_PREFIXES)):
            return Verdict.RECONNECT
    for err in chain:
        if isinstance(err, (psycopg2.InterfaceError,)):
            return Verdict.RECONNECT
        # A psycopg2 OperationalError without a SQLSTATE comes from libpq itself: the
        # connection broke ("server closed the connection unexpectedly", "could not connect").
        if isinstance(err, psycopg2.OperationalError) and not getattr(err, "pgcode", None):
            return Verdict.RECONNECT
        if isinstance(err, (sqlite3.OperationalError, pw.OperationalError)):
            text = str(err).lower()
            if any(t in text for t in _SQLITE_BUSY_TEXT):
                return Verdict.RETRY
    return Verdict.RAISE


def is_driver_error(exc: BaseException) -> bool:
    """True for peewee/DB-API errors, which `storage/` wraps before they leave it."""
    return isinstance(exc, (pw.PeeweeException, psycopg2.Error, sqlite3.Error)) and not isinstance(
        exc, pw.DoesNotExist)


def wrap_error(exc: BaseException, what: str, url: str = "") -> StorageError:
    """The `storage.errors` class for a driver error, with a one-line message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = f" on {url}" if url else ""
    if classify(exc) is Verdict.RECONNECT:
        return DatabaseUnavailable(f"{what}: database connection lost{where}: {text}")
    return StorageError(f"{what}{where}: {text}")


def reset_connection(db: Database | None) -> None:
    """Drop this thread's connection so the next query opens a fresh one."""
    target: pw.Database | None = db.pw if db is not None else database_proxy.obj
    if target is None:
        return
    try:
        target.close()
    except Exception:  # noqa: BLE001 - a broken connection may fail to close; forget it then
        conn = getattr(target._state, "conn", None)
        target.dispose()
        try:
            if conn is not None:
                conn.close()
        except Exception:  # noqa: BLE001
            pass


def backoff_delay(attempt: int, base: float = BASE_DELAY_S, cap: float = MAX_DELAY_S) -> float:
    """Full-jitter delay before retry number `attempt` (0-based)."""
    return random.uniform(0, min(cap, base * (2 ** attempt)))


def _wait(delay: float, stop: Callable[[], bool] | None) -> bool:
    """Sleep `delay` seconds unless `stop()` turns true; True when stopped."""
    if stop is None:
        time.sleep(delay)
        return False
    deadline = time.monotonic() + delay
    while True:
        if stop():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, _STOP_POLL_S))


def with_retry(fn: Callable[..., T], *args: object, attempts: int = DEFAULT_ATTEMPTS,
               base_delay: float = BASE_DELAY_S, max_delay: float = MAX_DELAY_S,
               stop: Callable[[], bool] | None = None, what: str | None = None,
               **kwargs: object) -> T:
    """Call `fn(*args, **kwargs)`, retrying it whole on transient database errors.

    Args:
        fn: the operation; it must open and close its own transaction.
        attempts: total tries, at least 1.
        base_delay, max_delay: the exponential backoff and its cap, in seconds.
        stop: polled while waiting; when it returns True the last error is raised at once.
        what: the operation's name for messages (default: `fn.__name__`).

    Raises:
        DatabaseUnavailable: the connection was lost and did not come back in time.
        StorageError: any other driver error (chained with `from`).
        Exception: anything `fn` raised that is not a driver error, unchanged.
    """
    name = what or getattr(fn, "__name__", "database operation")
    db = next((a for a in args if isinstance(a, Database)), None)
    url = db.url if db is not None else ""
    outer = getattr(_local, "depth", 0)
    _local.depth = outer + 1  # retrying functions called by `fn` run once: we retry them
    try:
        return _attempt(fn, args, kwargs, attempts, base_delay, max_delay, stop, name, db,
                        url)
    finally:
        _local.depth = outer


def _attempt(fn: Callable[..., T], args: tuple, kwargs: dict, attempts: int,
             base_delay: float, max_delay: float, stop: Callable[[], bool] | None, name: str,
             db: Database | None, url: str) -> T:
    for attempt in range(max(1, attempts)):
        try:
            return fn(*args, **kwargs)
        except StorageError:
            raise
        except Exception as exc:
            if not is_driver_error(exc):
                raise
            verdict = classify(exc)
            last = attempt == max(1, attempts) - 1
            if verdict is Verdict.RECONNECT:
                reset_connection(db)
            if verdict is Verdict.RAISE or last:
                raise wrap_error(exc, name, url) from exc
            delay = backoff_delay(attempt, base_delay, max_delay)
            logger.bind(action=name, attempt=attempt + 1).debug(
                "retrying {} after {} in {:.3f}s: {}", name, verdict.value, delay, exc)
            if _wait(delay, stop):
                raise wrap_error(exc, name, url) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def retrying(fn: Callable[P, T]) -> Callable[P, T]:
    """Decorator: run `fn` through `with_retry` with the default policy.

    Nested calls (a retrying function calling another) run the inner one directly, so only
    the outermost call, which owns the transaction, is retried.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        db = next((a for a in args if isinstance(a, Database)), None)
        if getattr(_local, "depth", 0) or (db is not None and db.pw.in_transaction()):
            # Part of a caller's transaction or retried call: retrying here would retry
            # half of it.
            return fn(*args, **kwargs)
        return with_retry(fn, *args, **kwargs)

    return wrapper
