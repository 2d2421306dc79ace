"""Shared pieces of the actor tier: job queries, a log capture, subprocess runners.

The models are bound to one database object per process (the last `connect()`); a test
connects once and hands that object to the pool (`PoolHarness(..., db=db)`), so that the
test's queries and the pool's transactions use the same connections per thread.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from loguru import logger

from storage.db import Database
from storage.models import Job, Worker
from storage.retry import with_retry

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("run_pool_proc.py")


def states(db: Database, ids: list[int] | None = None) -> dict[int, str]:
    """job id → state (all jobs, or `ids`)."""
    def query(db: Database) -> dict[int, str]:
        q = Job.select(Job.id, Job.state)
        if ids is not None:
            q = q.where(Job.id.in_(ids))
        return dict(q.tuples())
    # Retried like the storage layer's own calls: outage tests cut this thread's connection.
    return with_retry(query, db, attempts=50)


def job_fields(db: Database, job_id: int) -> dict:
    return with_retry(lambda db: Job.select().where(Job.id == job_id).dicts().get(), db)


def worker_count(db: Database) -> int:
    return with_retry(lambda db: Worker.select().count(), db)


def all_in(db: Database, state: str, ids: list[int]) -> bool:
    got = states(db, ids)
    return len(got) == len(ids) and all(s == state for s in got.values())


class LogCapture:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def sink(self, message) -> None:  # loguru calls it from any thread
        r = message.record
        self.records.append({"level": r["level"].name, "message": r["message"],
                             "extra": dict(r["extra"])})

    def count(self, *levels: str) -> int:
        return sum(1 for r in list(self.records) if r["level"] in levels)


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    handle = logger.add(capture.sink, level="DEBUG")
    yield capture
    logger.remove(handle)


def start_runner(db_url: str, workdir: Path, name: str, **spec) -> subprocess.Popen:
    """Start tests/actors/run_pool_proc.py on `db_url`; stderr goes to workdir/<name>.log."""
    spec = {"url": db_url, "dir": str(workdir), **spec}
    log = open(workdir / f"{name}.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIECEWORKS_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen([sys.executable, str(RUNNER), json.dumps(spec)], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    return proc
