"""Pause cancels a running job in time; resume runs it once more; orphans are never run."""
from __future__ import annotations

import time

from actors.testing import PoolHarness, Script, hang, succeed, test_config
from dataprep.context import JobContext, JobOutcome
from storage import jobs as job_store
from storage.db import connect
from storage.models import Job, Preparation
from tests.actors.conftest import all_in, job_fields, states
from tests.factories import make_jobs, make_source


def _jobs(db, count: int, src=None) -> list[int]:
    src = src or make_source(db)
    before = set(states(db))
    make_jobs(db, src.attachment_id, count, "pack")
    return sorted(set(states(db)) - before)


def test_pause_cancels_running_job_within_2s_and_resume_runs_it_once_more(db_url):
    db = connect(db_url)
    [job] = _jobs(db, 1)
    script = Script().on(job, hang(), succeed())
    with PoolHarness(test_config(db_url, concurrency=2), script, db=db) as pool:
        assert pool.wait_for(lambda: pool.signals.count("job_started", job_id=job) == 1, 10)
        paused_at = time.monotonic()
        assert job_store.pause_job(db, job)
        assert pool.wait_for(lambda: pool.signals.count("cancel_received", job_id=job) == 1, 5)
        cancel = pool.signals.notes("cancel_received")[0]
        assert cancel.at - paused_at < 2.0
        assert cancel.data["reason"] == "paused"
        assert pool.wait_for(lambda: pool.signals.count("settled", job_id=job, kind="let_go"), 5)
        assert job_fields(db, job)["state"] == "paused"
        assert job_fields(db, job)["worker"] is None
        assert job_store.resume_job(db, job)
        assert pool.wait_for(lambda: all_in(db, "complete", [job]), 10)
    assert script.run_count(job) == 2
    assert script.max_active[job] == 1


def test_resume_before_worker_let_go_never_runs_the_job_twice_at_once(db_url):
    db = connect(db_url)
    [job] = _jobs(db, 1)
    script = Script().on(job, hang(), succeed())
    with PoolHarness(test_config(db_url, concurrency=3), script, db=db) as pool:
        assert pool.wait_for(lambda: pool.signals.count("job_started", job_id=job) == 1, 10)
        assert job_store.pause_job(db, job)
        assert job_store.resume_job(db, job)  # ready, but still under the first worker
        assert pool.wait_for(lambda: all_in(db, "complete", [job]), 10)
    assert script.run_count(job) == 2
    assert script.max_active[job] == 1


def test_deleting_preparations_while_workers_run_never_runs_an_orphan(db_url):
    db = connect(db_url)
    sources = [make_source(db) for _ in range(3)]
    ids = [_jobs(db, 30, src) for src in sources]

    def work(job, ctx: JobContext) -> JobOutcome:
        ctx.cancel.wait(0.005)  # a few milliseconds of work
        return JobOutcome()

    script = Script(default=work)
    with PoolHarness(test_config(db_url, concurrency=3), script, db=db) as pool:
        assert pool.wait_for(lambda: pool.signals.count("claimed") >= 5, 10)
        for src in sources[:2]:
            Preparation.delete().where(Preparation.id == src.preparation_id).execute()
        assert pool.wait_for(lambda: all_in(db, "complete", ids[2]), 15)
        # The reaper deletes the orphaned jobs (attachment NULL) in its batches.
        assert pool.wait_for(lambda: Job.select().where(Job.attachment.is_null()).count() == 0, 15)
        assert pool.signals.count("restarted") == 0
    assert all(script.attachments_seen.values())
    assert Job.select().where(Job.state == "error").count() == 0
    assert pool.exit_code == 0
