"""Worker rows: register, heartbeat in one statement, deregister."""
from __future__ import annotations

import datetime as dt
import os
import uuid

from playhouse.test_utils import count_queries

from storage import jobs
from storage.models import Worker, utcnow
from storage.workers import (deregister_worker, heartbeat_workers, list_workers,
                             register_worker)
from tests.factories import make_job, make_source


def test_register_records_a_fresh_uuid_with_host_and_pid(db):
    now = utcnow()
    a = register_worker(db, hostname="h1", now=now)
    b = register_worker(db, hostname="h1", now=now)
    assert a != b and uuid.UUID(a).version == 4
    rows = {w.id: w for w in list_workers(db)}
    assert rows[a].hostname == "h1" and rows[a].pid == os.getpid()
    assert rows[a].started_at == now == rows[a].last_heartbeat
    assert rows[a].type == "dataset_worker"


def test_heartbeat_of_many_workers_is_one_statement(db):
    ids = [register_worker(db) for _ in range(5)]
    later = utcnow() + dt.timedelta(minutes=1)
    with count_queries() as counter:
        heartbeat_workers(db, ids, now=later)
    assert counter.count == 1
    assert {w.last_heartbeat for w in list_workers(db)} == {later}


def test_heartbeat_recreates_a_row_the_reaper_deleted(db):
    wid = register_worker(db)
    Worker.delete().where(Worker.id == wid).execute()
    heartbeat_workers(db, [wid])
    assert [w.id for w in list_workers(db)] == [wid]


def test_deregister_frees_the_workers_processing_jobs_for_the_next_claim(db):
    src = make_source(db)
    make_job(db, src.attachment_id, "scan")
    wid = register_worker(db)
    job = jobs.claim_job(db, wid, max_attempts=3)
    deregister_worker(db, wid)
    after = jobs.get_job(db, job.id)
    assert (after.state, after.worker_id) == ("processing", None)
    assert jobs.claim_job(db, register_worker(db), max_attempts=3).id == job.id
