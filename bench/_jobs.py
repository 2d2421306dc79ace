"""Running real jobs in a benchmark: fresh databases, preparations, claim, handler, complete.

The pack and scan benchmarks drive the real handlers (`dataprep.handlers.HANDLERS`) the way
a worker does: the job is claimed with `storage.jobs.claim_job`, its handler returns an
outcome, and the outcome's `apply` runs inside `storage.jobs.complete_job`. Each step is
timed separately, so a figure can be split into the handler's streaming and the database
apply.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import _common  # noqa: F401  (puts the repository on sys.path)
from loguru import logger

from dataprep.context import JobContext
from dataprep.handlers import HANDLERS
from storage import catalog
from storage.db import Database, connect
from storage.jobs import claim_job, complete_job
from storage.rows import JobRow
from storage.schema import init_schema
from storage.workers import register_worker

PG_URL_ENV = "PIECEWORKS_TEST_PG_URL"


def quiet_logs() -> None:
    """Keep warnings and errors on stderr; the per-job info lines would be noise."""
    logger.remove()
    logger.add(sys.stderr, level="WARNING")


def sqlite_url(directory: str) -> str:
    """A fresh SQLite database file in `directory`, with the schema."""
    path = os.path.join(directory, f"bench-{uuid.uuid4().hex[:8]}.db")
    url = f"sqlite:///{path}"
    db = connect(url)
    init_schema(db)
    db.close()
    return url


def remove_sqlite(url: str) -> None:
    """Delete a SQLite database made by `sqlite_url`, with its WAL and shared-memory files."""
    path = url.removeprefix("sqlite:///")
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def _admin(url: str):  # type: ignore[no-untyped-def]
    import psycopg2  # noqa: PLC0415 (only the PostgreSQL runs need it)

    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


@contextlib.contextmanager
def pg_scratch(admin_url: str) -> Iterator[str]:
    """A scratch PostgreSQL database with the schema, dropped on exit; yields its URL."""
    name = f"pw_bench_{uuid.uuid4().hex[:10]}"
    conn = _admin(admin_url)
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    url = urlunsplit(urlsplit(admin_url)._replace(path="/" + name))
    try:
        db = connect(url)
        init_schema(db)
        db.close()
        yield url
    finally:
        conn = _admin(admin_url)
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def make_preparation(db: Database, source_dir: str, output_dir: str | None) -> str:
    """A source storage over `source_dir`, an output storage (if any), a preparation over
    them with the default max size; returns the preparation's name."""
    tag = uuid.uuid4().hex[:8]
    catalog.create_storage(db, f"src-{tag}", source_dir)
    outputs: list[str] = []
    if output_dir is not None:
        catalog.create_storage(db, f"out-{tag}", output_dir)
        outputs.append(f"out-{tag}")
    catalog.create_preparation(db, f"prep-{tag}", [f"src-{tag}"], outputs)
    return f"prep-{tag}"


@dataclass
class JobTiming:
    """Seconds a job spent in its handler (streaming) and in complete_job (DB apply)."""

    job_id: int
    handler_s: float
    apply_s: float
    started: float
    ended: float


def claim(db: Database, worker_id: str, job_type: str) -> JobRow:
    """Claim the next job of `job_type` (there must be one)."""
    job = claim_job(db, worker_id, [job_type], max_attempts=5)
    if job is None:
        raise RuntimeError(f"no {job_type} job to claim")
    return job


def run_claimed(db: Database, job: JobRow, worker_id: str) -> JobTiming:
    """Run a claimed job's handler, then complete it with the outcome's apply."""
    ctx = JobContext(db=db, cancel=threading.Event(), worker_id=worker_id)
    t0 = time.perf_counter()
    outcome = HANDLERS[job.type](job, ctx)
    t1 = time.perf_counter()
    if not complete_job(db, job.id, worker_id, outcome.apply):
        raise RuntimeError(f"job {job.id}: lost the compare-and-set")
    t2 = time.perf_counter()
    return JobTiming(job.id, t1 - t0, t2 - t1, t0, t2)


def scan_preparation(db: Database, prep_name: str) -> JobTiming:
    """Start and run the preparation's scan job (one source); returns its timing."""
    catalog.start_scan(db, prep_name)
    worker = register_worker(db)
    return run_claimed(db, claim(db, worker, "scan"), worker)


def run_in_threads(db: Database, jobs: list[tuple[JobRow, str]]) -> list[JobTiming]:
    """Run claimed jobs at once, one thread each (as the workers of one runner process
    do); re-raise the first failure. Each thread closes its own connection at the end."""
    results: list[JobTiming | None] = [None] * len(jobs)
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def work(i: int, job: JobRow, worker: str) -> None:
        try:
            start.wait()
            results[i] = run_claimed(db, job, worker)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
        finally:
            db.pw.close()

    threads = [threading.Thread(target=work, args=(i, job, worker), name=f"job-{i}")
               for i, (job, worker) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def warm(paths: list[str], block: int = 8 << 20) -> int:
    """Read every file under `paths` once so it sits in page cache; returns bytes read."""
    total = 0
    buf = bytearray(block)
    for top in paths:
        for dirpath, _, names in os.walk(top):
            for name in names:
                with open(os.path.join(dirpath, name), "rb", buffering=0) as f:
                    while n := f.readinto(buf):
                        total += n
    return total
