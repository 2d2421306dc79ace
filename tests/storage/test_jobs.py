"""Claim and transitions of storage.jobs, on both backends."""
from __future__ import annotations

import datetime as dt

import psycopg2

from storage import jobs
from storage.models import File, FileRange, Job, Storage, Worker, utcnow
from tests.factories import (make_job, make_pack_job, make_source, make_worker)


def test_claim_returns_nothing_on_an_empty_queue(db):
    assert jobs.claim_job(db, make_worker(db), max_attempts=3) is None


def test_claim_loads_attachment_preparation_source_and_outputs(db):
    src = make_source(db, source_path="/data/in", outputs=("/data/out1", "/data/out2"))
    job_id = make_job(db, src.attachment_id, "scan")
    wid = make_worker(db)
    job = jobs.claim_job(db, wid, max_attempts=3)
    assert job is not None and job.id == job_id
    assert (job.state, job.worker_id, job.attempts) == ("processing", wid, 1)
    assert job.claimed_at is not None
    assert job.attachment is not None
    assert job.attachment.preparation.id == src.preparation_id
    assert job.attachment.source.path == "/data/in"
    assert [o.path for o in job.attachment.outputs] == ["/data/out1", "/data/out2"]
    assert job.ranges == ()


def test_claim_of_a_pack_job_loads_its_ranges_in_range_id_order(db):
    src = make_source(db)
    job_id = make_pack_job(db, src, sizes=(5, 7, 11))
    job = jobs.claim_job(db, make_worker(db), ["pack"], max_attempts=3)
    assert job is not None and job.id == job_id
    assert [r.length for r in job.ranges] == [5, 7, 11]
    assert [r.file.size for r in job.ranges] == [5, 7, 11]
    assert [r.id for r in job.ranges] == sorted(r.id for r in job.ranges)


def test_claim_prefers_types_in_the_order_given_then_lowest_id(db):
    src = make_source(db)
    pack = make_job(db, src.attachment_id, "pack")
    scan = make_job(db, src.attachment_id, "scan")
    dag = make_job(db, src.attachment_id, "daggen")
    wid = make_worker(db)
    order = ["daggen", "scan", "pack"]
    assert [jobs.claim_job(db, wid, order, max_attempts=3).id for _ in range(3)] == [dag, scan, pack]
    assert jobs.claim_job(db, wid, order, max_attempts=3) is None


def test_claim_skips_types_not_asked_for(db):
    src = make_source(db)
    make_job(db, src.attachment_id, "scan")
    assert jobs.claim_job(db, make_worker(db), ["pack"], max_attempts=3) is None


def test_claim_never_takes_orphans_held_jobs_or_jobs_waiting_for_not_before(db):
    src = make_source(db)
    wid = make_worker(db)
    now = utcnow()
    make_job(db, None, "scan")                                    # orphan
    make_job(db, src.attachment_id, "scan", worker_id=wid)        # resumed, not let go
    make_job(db, src.attachment_id, "scan", state="paused")
    make_job(db, src.attachment_id, "scan", state="complete")
    make_job(db, src.attachment_id, "scan", state="error")
    make_job(db, src.attachment_id, "scan", state="created")
    later = make_job(db, src.attachment_id, "scan", not_before=now + dt.timedelta(seconds=30))
    assert jobs.claim_job(db, wid, ["scan"], max_attempts=3, now=now) is None
    job = jobs.claim_job(db, wid, ["scan"], max_attempts=3, now=now + dt.timedelta(seconds=31))
    assert job is not None and job.id == later


def test_claim_takes_processing_jobs_whose_worker_is_gone(db):
    src = make_source(db)
    old = make_worker(db)
    job_id = make_job(db, src.attachment_id, "pack", state="processing", worker_id=old,
                      attempts=1)
    Worker.delete().where(Worker.id == old).execute()  # FK SET NULL on jobs.worker_id
    new = make_worker(db)
    job = jobs.claim_job(db, new, max_attempts=3)
    assert job is not None and (job.id, job.worker_id, job.attempts) == (job_id, new, 2)


def test_a_job_that_used_max_attempts_is_quarantined_and_the_claim_moves_on(db):
    src = make_source(db)
    poison = make_job(db, src.attachment_id, "scan", state="processing", attempts=3)
    good = make_job(db, src.attachment_id, "scan")
    job = jobs.claim_job(db, make_worker(db), max_attempts=3)
    assert job is not None and job.id == good
    bad = jobs.get_job(db, poison)
    assert bad.state == "error" and bad.worker_id is None and bad.attempts == 3
    assert bad.error_message == "quarantined after 3 attempts that never finished"


def test_attempts_count_every_claim_until_quarantine(db):
    src = make_source(db)
    job_id = make_job(db, src.attachment_id, "scan")
    for attempt in (1, 2):
        wid = make_worker(db)
        job = jobs.claim_job(db, wid, max_attempts=2)
        assert job.attempts == attempt
        Worker.delete().where(Worker.id == wid).execute()  # the worker dies mid-job
    assert jobs.claim_job(db, make_worker(db), max_attempts=2) is None
    assert jobs.get_job(db, job_id).state == "error"


def test_complete_runs_apply_in_the_same_transaction(db):
    src = make_source(db)
    job_id = make_job(db, src.attachment_id, "scan")
    wid = make_worker(db)
    jobs.claim_job(db, wid, max_attempts=3)
    seen = []
    assert jobs.complete_job(db, job_id, wid, lambda: seen.append(db.pw.in_transaction()))
    assert seen == [True]
    job = jobs.get_job(db, job_id)
    assert (job.state, job.worker_id, job.error_message) == ("complete", None, "")


def test_complete_by_another_worker_is_refused_without_calling_apply(db):
    src = make_source(db)
    job_id = make_job(db, src.attachment_id, "scan")
    wid = make_worker(db)
    jobs.claim_job(db, wid, max_attempts=3)
    called = []
    assert not jobs.complete_job(db, job_id, make_worker(db), lambda: called.append(1))
    assert called == [] and jobs.get_job(db, job_id).state == "processing"


def test_complete_rolls_back_when_apply_raises(db):
    src = make_source(db)
    job_id = make_job(db, src.attachment_id, "scan")
    wid = make_worker(db)
    jobs.claim_job(db, wid, max_attempts=3)

    def apply():
        make_job(db, src.attachment_id, "pack")
        raise ValueError("boom")

    try:
        jobs.complete_job(db, job_id, wid, apply)
    except ValueError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("apply's error was swallowed")
    assert jobs.get_job(db, job_id).state == "processing"
    assert Job.select().where(Job.type == "pack").count() == 0


def test_fail_stores_message_and_trace(db):
    src = make_source(db)
    job_id = make_job(db, src.attachment_id, "scan")
    wid = make_worker(db)
    jobs.claim_job(db, wid, max_attempts=3)
    assert jobs.fail_job(db, job_id, wid, "cannot read /x", "Traceback ...")
    job = jobs.get_job(db, job_id)
    assert (job.state, job.worker_id, job.error_message, job.error_stack_trace) == (
        "error", None, "cannot read /x", "Traceback ...")
    assert not jobs.fail_job(db, job_id, wid, "again")


def test_release_gives_the_attempt_back(db):
    src = make_source(db)
    job_id = make_job(db, src.attachment_id, "scan")
    wid = make_worker(db)
    jobs.claim_job(db, wid, max_attempts=3)
    assert jobs.release_job(db, job_id, wid)
    job = jobs.get_job(db, job_id)
    assert (job.state, job.worker_id, job.attempts) == ("ready", None, 0)


def test_retry_later_is_claimable_only_after_not_before(db):
    src = make_source(db)
    job_id = make_job(db, src.attachment_id, "scan")
    wid = make_worker(db)
    now = utcnow()
    jobs.claim_job(db, wid, max_attempts=3, now=now)
    when = now + dt.timedelta(minutes=1)
    assert jobs.retry_later(db, job_id, wid, when, "source busy", now=now)
    job = jobs.get_job(db, job_id)
    assert (job.state, job.attempts, job.error_message, job.not_before) == (
        "ready", 1, "source busy", when)
    assert jobs.claim_job(db, wid, max_attempts=3, now=now) is None
    assert jobs.claim_job(db, wid, max_attempts=3, now=when).attempts == 2


def test_progress_is_recorded_only_by_the_owner(db):
    src = make_source(db)
    job_id = make_job(db, src.attachment_id, "pack")
    wid = make_worker(db)
    jobs.claim_job(db, wid, max_attempts=3)
    assert jobs.update_progress(db, job_id, wid, 10, 100)
    assert not jobs.update_progress(db, job_id, "someone-else", 20, 100)
    job = jobs.get_job(db, job_id)
    assert (job.progress_bytes, job.total_bytes) == (10, 100)


def test_resume_while_the_old_worker_holds_the_job_waits_for_let_go(db):
    src = make_source(db)
    job_id = make_job(db, src.attachment_id, "scan")
    old = make_worker(db)
    jobs.claim_job(db, old, max_attempts=3)
    assert jobs.pause_job(db, job_id)
    assert jobs.get_job(db, job_id).worker_id == old
    assert jobs.resume_job(db, job_id)
    new = make_worker(db)
    assert jobs.claim_job(db, new, max_attempts=3) is None        # old has not let go
    assert not jobs.complete_job(db, job_id, old)                 # and cannot finish it
    assert jobs.let_go(db, job_id, old)
    job = jobs.claim_job(db, new, max_attempts=3)
    assert job is not None and job.worker_id == new


def test_pause_is_refused_outside_ready_and_processing(db):
    src = make_source(db)
    done = make_job(db, src.attachment_id, "scan", state="complete")
    assert not jobs.pause_job(db, done)
    assert not jobs.resume_job(db, done)


def test_restart_resets_attempts_and_error_fields(db):
    src = make_source(db)
    job_id = make_job(db, src.attachment_id, "scan", state="error", attempts=5,
                      error_message="quarantined after 5 attempts that never finished")
    assert jobs.restart_job(db, job_id)
    job = jobs.get_job(db, job_id)
    assert (job.state, job.attempts, job.error_message) == ("ready", 0, "")
    assert not jobs.restart_job(db, make_job(db, src.attachment_id, "scan"))  # ready already


def test_job_states_reports_existing_ids_only(db):
    src = make_source(db)
    a = make_job(db, src.attachment_id, "scan")
    b = make_job(db, src.attachment_id, "pack", state="paused")
    assert jobs.job_states(db, [a, b, 999_999]) == {a: "ready", b: "paused"}


def test_load_job_of_an_orphan_has_no_attachment(db):
    job_id = make_job(db, None, "pack")
    job = jobs.load_job(db, job_id)
    assert job is not None and job.attachment is None
    assert jobs.load_job(db, 999_999) is None


def test_the_claimed_job_equals_what_load_job_reads_back_cids_and_config_included(db):
    src = make_source(db, outputs=("/out",))
    Storage.update(config={"k": "v"}).where(Storage.id == src.storage_id).execute()
    job_id = make_pack_job(db, src, sizes=(3, 4))
    FileRange.update(cid=b"\x01\x55\x12\x20" + bytes(range(32))).execute()
    File.update(cid=b"\x01\x70\x12\x20" + bytes(32)).execute()
    claimed = jobs.claim_job(db, make_worker(db), ["pack"], max_attempts=3)
    assert claimed == jobs.load_job(db, job_id)
    assert claimed.ranges[0].cid == b"\x01\x55\x12\x20" + bytes(range(32))
    assert claimed.ranges[1].file.cid == b"\x01\x70\x12\x20" + bytes(32)
    assert claimed.attachment.source.config == {"k": "v"}


def test_a_claim_survives_its_prepared_statement_being_discarded(db):
    src = make_source(db)
    first = make_job(db, src.attachment_id, "scan")
    second = make_job(db, src.attachment_id, "scan")
    worker = make_worker(db)
    assert jobs.claim_job(db, worker, max_attempts=3).id == first
    assert jobs.complete_job(db, first, worker)
    if db.is_postgres:
        db.pw.execute_sql("DISCARD ALL")  # what a connection pooler may do between uses
    assert jobs.claim_job(db, worker, max_attempts=3).id == second


def test_a_retried_claim_adopts_the_job_its_lost_first_attempt_committed(db):
    # A claim whose commit reached the server but whose answer was lost (connection cut)
    # is retried; the retry must return that job instead of claiming a second one.
    src = make_source(db)
    first = make_job(db, src.attachment_id, "scan")
    make_job(db, src.attachment_id, "scan")
    worker = make_worker(db)
    assert jobs.claim_job(db, worker, max_attempts=3).id == first    # the "lost" attempt
    again, _ = jobs._claim_tx(db, worker, ["scan"], 3, utcnow(), adopt=True)
    assert again is not None and again.id == first and again.attachment is not None
    assert Job.select().where(Job.state == "processing").count() == 1


def test_a_claim_whose_answer_was_lost_returns_the_same_pack_job_with_its_ranges(
        db, monkeypatch):
    src = make_source(db)
    job_id = make_pack_job(db, src, sizes=(1, 2))
    make_pack_job(db, src, sizes=(3,))
    worker = make_worker(db)
    real = jobs._claim_tx
    calls = []

    def answer_lost_once(*args, **kwargs):
        calls.append(kwargs["adopt"])
        row = real(*args, **kwargs)
        if len(calls) == 1:  # committed, but the connection broke before the answer came
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
        return row

    monkeypatch.setattr(jobs, "_claim_tx", answer_lost_once)
    job = jobs.claim_job(db, worker, ["pack"], max_attempts=3)
    assert calls == [False, True]
    assert job.id == job_id and [r.length for r in job.ranges] == [1, 2]
    assert Job.select().where(Job.state == "processing").count() == 1


def test_a_pack_job_without_ranges_is_claimed_in_one_transaction_without_a_second_read(db):
    # Regression: on PostgreSQL an empty range list from the claim statement was taken for
    # "not loaded" and read again, one more round trip per claim.
    from playhouse.test_utils import count_queries  # noqa: PLC0415

    src = make_source(db)
    make_job(db, src.attachment_id, "pack")
    worker = make_worker(db)
    with count_queries() as counter:
        job = jobs.claim_job(db, worker, ["pack"], max_attempts=3)
    assert job is not None and job.ranges == ()
    reads_of_ranges = [q for q in counter.get_queries()
                       if q.msg[0].startswith("SELECT") and "FROM file_ranges r JOIN" in q.msg[0]]
    assert reads_of_ranges == [] if db.is_postgres else len(reads_of_ranges) == 1
