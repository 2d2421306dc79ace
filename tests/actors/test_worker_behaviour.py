"""The worker on its own and in the pool: backoff, dispatch guard, outcomes, exit modes."""
from __future__ import annotations

import queue

import pykka
import pytest

from actors.ledger import Ledger
from actors.messages import ClaimJob, JobAssigned, JobCancelledAck, JobFailed
from actors.testing import (PoolHarness, Script, raise_error, report_progress, succeed,
                            test_config, transient)
from actors.worker import Backoff, Worker, failure_message
from dataprep.errors import SourceError
from storage.db import connect
from storage.models import utcnow
from storage.rows import JobRow
from tests.actors.conftest import all_in, job_fields, states, worker_count
from tests.factories import make_jobs, make_source


def _jobs(db, count: int) -> list[int]:
    src = make_source(db)
    before = set(states(db))
    make_jobs(db, src.attachment_id, count, "pack")
    return sorted(set(states(db)) - before)


def test_backoff_sleeps_first_then_doubles_up_to_the_cap_and_resets():
    backoff = Backoff(5, 160)
    assert [backoff.next_sleep() for _ in range(8)] == [5, 10, 20, 40, 80, 160, 160, 160]
    backoff.reset()
    assert backoff.next_sleep() == 5


def test_backoff_replaces_zero_intervals_with_the_defaults():
    backoff = Backoff(0, 0)
    assert (backoff.min, backoff.max) == (5.0, 160.0)


def test_failure_message_keeps_data_path_text_and_names_other_exception_types():
    assert failure_message(SourceError("cannot read /a/b")) == "cannot read /a/b"
    assert failure_message(SystemExit(2)) == "SystemExit: 2"
    assert failure_message(MemoryError()) == "MemoryError"


class Recorder(pykka.ThreadingActor):
    """A stand-in peer that records every message it is told."""

    use_daemon_thread = True

    def __init__(self, inbox: queue.Queue) -> None:
        super().__init__()
        self.inbox = inbox

    def on_receive(self, message):
        self.inbox.put(message)


@pytest.fixture
def lone_worker(db_url):
    """A real Worker actor whose claimer and supervisor are recorders."""
    db = connect(db_url)
    claims: queue.Queue = queue.Queue()
    ran: list[int] = []
    ledger = Ledger()
    claimer = Recorder.start(claims)
    supervisor = Recorder.start(queue.Queue())
    ledger.claimer_ref = claimer

    def handler(job, ctx):
        ran.append(job.id)
        raise AssertionError("an orphan must never run")

    worker = Worker.start(db=db, config=test_config(db_url), ledger=ledger,
                          handlers={"pack": handler}, name="worker-0", generation=1,
                          supervisor=supervisor, clock=utcnow)
    yield worker, claims, ran
    for ref in (worker, claimer, supervisor):
        ref.stop()


def _orphan(job_id: int, worker_id: str) -> JobRow:
    return JobRow(id=job_id, type="pack", state="processing", attempts=1, worker_id=worker_id,
                  attachment_id=None)


def test_dispatch_guard_fails_a_job_without_attachment_and_never_runs_it(lone_worker):
    worker, claims, ran = lone_worker
    claim = claims.get(timeout=5)
    assert isinstance(claim, ClaimJob)
    worker.tell(JobAssigned(claim.request_id, _orphan(42, claim.worker_id)))
    report = claims.get(timeout=5)
    assert isinstance(report, JobFailed)
    assert report.message == "job 42 has no attachment (orphaned by preparation deletion)"
    assert ran == []


def test_an_answer_to_an_abandoned_claim_request_is_given_back(lone_worker):
    worker, claims, ran = lone_worker
    claim = claims.get(timeout=5)
    worker.tell(JobAssigned(claim.request_id + 7, _orphan(43, claim.worker_id)))
    report = claims.get(timeout=5)
    assert isinstance(report, JobCancelledAck) and report.reason == "shutdown"
    assert report.job_id == 43 and ran == []


def test_idle_worker_backoff_doubles_to_max_interval(db_url):
    db = connect(db_url)
    config = test_config(db_url, concurrency=1, min_interval=0.05, max_interval=0.2)
    with PoolHarness(config, Script(), db=db) as pool:
        assert pool.wait_for(lambda: pool.signals.count("backoff") >= 5, 10)
    sleeps = [n.data["seconds"] for n in pool.signals.notes("backoff")][:5]
    assert sleeps == [0.05, 0.1, 0.2, 0.2, 0.2]


def test_transient_error_puts_the_job_back_and_it_succeeds_on_the_next_attempt(db_url):
    db = connect(db_url)
    [job] = _jobs(db, 1)
    script = Script().on(job, transient("source offline"), succeed())
    with PoolHarness(test_config(db_url), script, db=db) as pool:
        assert pool.wait_for(lambda: all_in(db, "complete", [job]), 10)
    assert pool.signals.count("settled", job_id=job, kind="retry") == 1
    assert job_fields(db, job)["attempts"] == 2
    assert script.run_count(job) == 2


def test_progress_reaches_the_database_with_its_final_figure(db_url):
    db = connect(db_url)
    [job] = _jobs(db, 1)
    script = Script().on(job, report_progress(steps=50, total=5000))
    with PoolHarness(test_config(db_url), script, db=db) as pool:
        assert pool.wait_for(lambda: all_in(db, "complete", [job]), 10)
    fields = job_fields(db, job)
    assert (fields["progress_bytes"], fields["total_bytes"]) == (5000, 5000)


def test_exit_on_complete_stops_every_worker_and_exits_zero(db_url):
    db = connect(db_url)
    ids = _jobs(db, 6)
    config = test_config(db_url, concurrency=3, exit_on_complete=True)
    pool = PoolHarness(config, Script(), db=db).start()
    assert pool.join(15) == 0
    assert all_in(db, "complete", ids)
    assert worker_count(db) == 0


def test_exit_on_error_stops_cleanly_and_exits_one(db_url):
    db = connect(db_url)
    ids = _jobs(db, 3)
    script = Script().on(ids[0], raise_error("bad input"))
    config = test_config(db_url, concurrency=1, exit_on_error=True)
    pool = PoolHarness(config, script, db=db).start()
    assert pool.join(15) == 1
    assert states(db, [ids[0]]) == {ids[0]: "error"}
    assert set(states(db, ids[1:]).values()) <= {"ready", "complete"}
    assert worker_count(db) == 0
