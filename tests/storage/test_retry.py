"""The retry helper against real errors of both backends, a killed connection and a restart."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import peewee as pw
import psycopg2
import pytest
from loguru import logger

from storage.db import connect
from storage.errors import DatabaseUnavailable, StorageError
from storage.models import Worker
from storage.retry import Verdict, classify, retrying, with_retry
from storage.workers import list_workers, register_worker

only_postgres = pytest.mark.parametrize("db_url", [pytest.param("postgres",
                                                                marks=pytest.mark.postgres)],
                                        indirect=True)
only_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _raise_sqlstate(db, code: str) -> None:
    db.pw.execute_sql(
        f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{code}'; END $$")


@only_postgres
def test_serialization_failures_and_deadlocks_are_retried_until_they_pass(db):
    calls = []

    def op(db):
        calls.append(1)
        if len(calls) == 1:
            _raise_sqlstate(db, "40001")
        if len(calls) == 2:
            _raise_sqlstate(db, "40P01")
        return "ok"

    assert with_retry(op, db, base_delay=0.001) == "ok"
    assert len(calls) == 3


@only_postgres
def test_other_database_errors_are_raised_at_once_and_wrapped(db):
    calls = []

    def op(db):
        calls.append(1)
        _raise_sqlstate(db, "23505")

    with pytest.raises(StorageError, match="injected") as info:
        with_retry(op, db, base_delay=0.001)
    assert len(calls) == 1
    assert isinstance(info.value.__cause__, pw.IntegrityError)
    assert not isinstance(info.value, DatabaseUnavailable)


def test_errors_that_are_not_database_errors_pass_through_untouched(db):
    calls = []

    def op(db):
        calls.append(1)
        raise ValueError("from a handler")

    with pytest.raises(ValueError, match="from a handler"):
        with_retry(op, db)
    assert len(calls) == 1


def test_a_busy_database_is_retried_up_to_the_attempt_limit(db):
    calls = []

    def op(db):
        calls.append(1)
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(StorageError, match="database is locked"):
        with_retry(op, db, attempts=4, base_delay=0.001)
    assert len(calls) == 4


def test_a_stop_request_cuts_the_backoff_short(db):
    stopping = threading.Event()

    def op(db):
        stopping.set()  # the caller starts shutting down while we are failing
        raise sqlite3.OperationalError("database is locked")

    start = time.monotonic()
    with pytest.raises(StorageError):
        with_retry(op, db, base_delay=30, max_delay=30, stop=stopping.is_set)
    assert time.monotonic() - start < 1.0


def test_a_retrying_call_inside_a_transaction_is_not_retried_on_its_own(db):
    calls = []

    @retrying
    def inner(db):
        calls.append(1)
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError):
        with db.atomic():
            inner(db)
    assert len(calls) == 1


@only_sqlite
def test_sqlite_database_is_locked_is_retried_until_the_lock_is_released(db, db_url):
    path = db_url.removeprefix("sqlite:///")
    locked, release, released = threading.Event(), threading.Event(), threading.Event()

    def hold_write_lock() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(30)
        conn.execute("COMMIT")
        conn.close()
        released.set()

    holder = threading.Thread(target=hold_write_lock)
    holder.start()
    assert locked.wait(10)
    db.pw.execute_sql("PRAGMA busy_timeout = 50")  # fail fast instead of waiting 10 s
    calls = []

    def op(db):
        calls.append(1)
        if len(calls) == 2:
            release.set()
            assert released.wait(10)
        with db.atomic():
            Worker.insert(id=f"w{len(calls)}").execute()

    with_retry(op, db, base_delay=0.001)
    holder.join(10)
    assert len(calls) == 2
    assert [w.id for w in Worker.select()] == ["w2"]


@only_postgres
def test_a_killed_connection_is_reopened_on_the_next_attempt(db, db_url):
    register_worker(db)
    pid = db.pw.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    admin = psycopg2.connect(db_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.close()
    assert len(list_workers(db)) == 1
    assert db.pw.execute_sql("SELECT pg_backend_pid()").fetchone()[0] != pid


def test_an_unreachable_server_gives_database_unavailable():
    db = connect("postgresql://nobody@127.0.0.1:1/none", check=False)
    with pytest.raises(DatabaseUnavailable, match="127.0.0.1:1"):
        with_retry(list_workers, db, attempts=2, base_delay=0.001)
    assert classify(DatabaseUnavailable()) is Verdict.RAISE


def _cluster() -> tuple[str, str] | None:
    """(version, name) of the local PostgreSQL cluster, if this test may restart it."""
    if shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        return None
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*")) if Path(
        "/etc/postgresql").exists() else []
    return (versions[-1], "main") if versions else None


@pytest.mark.slow
@only_postgres
def test_the_retry_helper_waits_out_a_postgresql_restart(db):
    cluster = _cluster()
    if cluster is None:
        pytest.skip("cannot control the local PostgreSQL server (needs root and pg_ctlcluster)")
    if not os.environ.get("CI"):
        pytest.skip("stopping the shared PostgreSQL server would break other test runs on "
                    "this machine; runs under CI")
    version, name = cluster
    register_worker(db)
    failures = threading.Event()
    sink = logger.add(lambda m: failures.set() if "retrying list_workers" in m else None,
                      level="DEBUG")
    result: list = []

    def ctl(action: str) -> None:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action]
                       + (["-m", "fast"] if action == "stop" else []), check=True, timeout=60)

    try:
        ctl("stop")
        reader = threading.Thread(target=lambda: result.append(
            with_retry(list_workers, db, attempts=60, base_delay=0.05, max_delay=1.0)))
        reader.start()
        assert failures.wait(30), "the helper never saw the server down"
        ctl("start")
        reader.join(90)
    finally:
        logger.remove(sink)
        if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode != 0:
            ctl("start")
    assert result and len(result[0]) == 1
