"""One reaper at a time across pools; a database outage is waited out without crashes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

import psycopg2

from actors.testing import PoolHarness, Script, test_config
from dataprep.context import JobContext, JobOutcome
from storage.db import connect
from tests.actors.conftest import all_in, states, worker_count
from tests.factories import make_jobs, make_source


def _jobs(db, count: int) -> list[int]:
    src = make_source(db)
    before = set(states(db))
    make_jobs(db, src.attachment_id, count, "pack")
    return sorted(set(states(db)) - before)


def test_only_the_lease_holder_reaps_while_several_pools_are_configured_to(db_url):
    db = connect(db_url)
    config = test_config(db_url, concurrency=1, interval=0.05, lease_ttl=3.0)
    first = PoolHarness(config, Script(), db=db).start()
    assert first.wait_for(lambda: first.signals.count("reaper_acting") >= 1, 5)
    second = PoolHarness(config, Script(), db=db).start()
    try:
        assert second.wait_for(lambda: second.signals.count("reaper_skipped") >= 10, 10)
        assert second.signals.count("reaper_acting") == 0
        acting = {n.data["holder"] for n in first.signals.notes("reaper_acting")}
        assert len(acting) == 1
        assert first.stop(10) == 0  # gives the lease back
        assert second.wait_for(lambda: second.signals.count("reaper_acting") >= 1, 5)
    finally:
        if first.running:
            first.stop()
        second.stop(10)
    # Never two holders at once: every acting cycle of the second pool came after the first
    # pool had stopped.
    first_last = max(n.at for n in first.signals.notes("reaper_acting"))
    second_first = min(n.at for n in second.signals.notes("reaper_acting"))
    assert second_first > first_last


def _slow(job, ctx: JobContext) -> JobOutcome:
    ctx.cancel.wait(0.01)  # ten milliseconds of work
    return JobOutcome()


class _Outage:
    """Makes the test database unreachable, and reachable again."""

    def __init__(self, db_url: str, tmp_path) -> None:
        self.db_url = db_url
        self.tmp_path = tmp_path
        self.locker: subprocess.Popen | None = None

    def begin(self) -> None:
        if self.db_url.startswith("sqlite"):
            # Another process holds the file's write lock (an EXCLUSIVE transaction).
            path = self.db_url[len("sqlite:///"):]
            code = ("import sqlite3,sys; c=sqlite3.connect(sys.argv[1], isolation_level=None); "
                    "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); "
                    "sys.stdin.readline(); c.execute('COMMIT')")
            self.locker = subprocess.Popen([sys.executable, "-c", code, path], text=True,
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert self.locker.stdout is not None
            assert self.locker.stdout.readline().strip() == "locked"
        else:
            # Our database only (the server is shared): refuse new connections and end
            # the open ones, as a server restart would.
            self._admin(f'ALTER DATABASE "{self._name}" ALLOW_CONNECTIONS false',
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        f"WHERE datname = '{self._name}' AND pid <> pg_backend_pid()")

    def end(self) -> None:
        if self.locker is not None:
            self.locker.communicate("go\n", timeout=10)
            self.locker = None
        elif not self.db_url.startswith("sqlite"):
            self._admin(f'ALTER DATABASE "{self._name}" ALLOW_CONNECTIONS true')

    @property
    def _name(self) -> str:
        return urlsplit(self.db_url).path.lstrip("/")

    def _admin(self, *statements: str) -> None:
        conn = psycopg2.connect(os.environ["PIECEWORKS_TEST_PG_URL"])
        conn.autocommit = True
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
        conn.close()


def test_database_outage_backs_off_quietly_and_work_resumes(db_url, tmp_path, logs):
    db = connect(db_url)
    ids = _jobs(db, 60)
    outage = _Outage(db_url, tmp_path)
    config = test_config(db_url, concurrency=2)
    with PoolHarness(config, Script(default=_slow), db=db) as pool:
        assert pool.wait_for(lambda: pool.signals.count("settled") >= 5, 10)
        outage.begin()
        start = len(logs.records)
        try:
            # Wait until the pool has felt it. PostgreSQL: a call failed even after the
            # storage layer's retries, and the pool logged it (rate-limited). SQLite: a
            # write waited out the 10 s busy timeout and is being retried.
            if db.is_postgres:
                felt = lambda r: r["level"] == "WARNING" and "unavailable" in r["message"]
            else:
                felt = lambda r: "database is locked" in r["message"]
            assert pool.wait_for(lambda: any(felt(r) for r in logs.records[start:]), 30)
        finally:
            outage.end()
        assert pool.wait_for(lambda: all_in(db, "complete", ids), 40)
        assert pool.running
        assert pool.signals.count("restarted") == 0
        assert pool.signals.count("escalated") == 0
    noisy = [r for r in logs.records[start:] if r["level"] in ("WARNING", "ERROR")]
    assert len(noisy) < 40, [r["message"] for r in noisy]
    assert pool.exit_code == 0
    assert worker_count(db) == 0


def test_stopping_while_the_database_is_unreachable_finishes_within_a_bound(db_url, tmp_path):
    db = connect(db_url)
    ids = _jobs(db, 40)
    outage = _Outage(db_url, tmp_path)
    config = test_config(db_url, concurrency=2, shutdown_timeout=1.0)
    pool = PoolHarness(config, Script(default=_slow), db=db).start()
    try:
        assert pool.wait_for(lambda: pool.signals.count("settled") >= 3, 10)
        outage.begin()
        try:
            started = time.monotonic()
            # shutdown_timeout for the workers, 2 s for the actors, shutdown_timeout for cleanup
            assert pool.stop(8) == 0
            assert time.monotonic() - started < 6
        finally:
            outage.end()
    finally:
        if pool.running:
            pool.stop()
    assert set(states(db, ids).values()) <= {"ready", "processing", "complete"}
