"""Stale-worker rescue and orphan reaping (SPEC §5), on both backends."""
from __future__ import annotations

import datetime as dt

from storage import jobs
from storage.models import Car, CarBlock, Directory, File, FileRange, Job, Worker, utcnow
from storage.reaping import (DEFAULT_BATCH_SIZES, reap_orphans, rescue_jobs,
                             rescue_stale_workers)
from storage.workers import heartbeat_workers
from tests.factories import (make_car, make_car_block, make_directory, make_file, make_job,
                             make_range, make_source, make_worker)

STALE = dt.timedelta(minutes=5)


def _claimed(db, src, worker_id, job_type="scan", *, now=None):
    make_job(db, src.attachment_id, job_type)
    job = jobs.claim_job(db, worker_id, [job_type], max_attempts=5, now=now)
    assert job is not None
    return job.id


def test_a_stale_workers_processing_jobs_go_back_to_ready_and_its_row_goes(db):
    src = make_source(db)
    now = utcnow()
    stale = make_worker(db, last_heartbeat=now - STALE - dt.timedelta(seconds=1))
    job_id = _claimed(db, src, stale)
    paused_id = _claimed(db, src, stale, "pack")
    jobs.pause_job(db, paused_id)  # paused under the stale worker: it never let go
    result = rescue_stale_workers(db, stale_after=STALE, now=now)
    assert (result.stale_workers, result.rescued_job_ids, result.detached_jobs,
            result.deleted_workers) == (1, (job_id,), 1, 1)
    job = jobs.get_job(db, job_id)
    assert (job.state, job.worker_id, job.attempts) == ("ready", None, 1)
    paused = jobs.get_job(db, paused_id)
    assert (paused.state, paused.worker_id) == ("paused", None)
    assert not Worker.select().where(Worker.id == stale).exists()


def test_a_worker_just_inside_the_horizon_is_not_rescued(db):
    src = make_source(db)
    now = utcnow()
    fresh = make_worker(db, last_heartbeat=now - STALE + dt.timedelta(seconds=1))
    job_id = _claimed(db, src, fresh)
    result = rescue_stale_workers(db, stale_after=STALE, now=now)
    assert result.stale_workers == 0 and result.rescued_jobs == 0
    assert jobs.get_job(db, job_id).worker_id == fresh


def test_completing_after_the_reaper_took_the_job_back_is_refused_and_writes_nothing(db):
    src = make_source(db)
    now = utcnow()
    worker = make_worker(db, last_heartbeat=now)
    job_id = _claimed(db, src, worker, now=now)
    later = now + STALE + dt.timedelta(seconds=1)
    assert rescue_stale_workers(db, stale_after=STALE, now=later).rescued_job_ids == (job_id,)

    def apply():
        make_car(db, preparation_id=src.preparation_id, attachment_id=src.attachment_id,
                 job_id=job_id)

    assert jobs.complete_job(db, job_id, worker, apply, now=later) is False
    assert Car.select().count() == 0
    assert jobs.get_job(db, job_id).state == "ready"


def test_the_reaper_resetting_a_job_that_has_just_completed_changes_nothing(db):
    src = make_source(db)
    worker = make_worker(db)
    job_id = _claimed(db, src, worker)
    seen = [j.id for j in Job.select().where((Job.worker == worker)
                                             & (Job.state == "processing"))]
    assert jobs.complete_job(db, job_id, worker)  # between the reaper's read and write
    assert rescue_jobs(db, worker, seen) == []
    job = jobs.get_job(db, job_id)
    assert (job.state, job.worker_id) == ("complete", None)


def test_a_heartbeat_after_the_rescue_recreates_the_worker_row(db):
    now = utcnow()
    stale = make_worker(db, last_heartbeat=now - STALE * 2)
    assert rescue_stale_workers(db, stale_after=STALE, now=now).deleted_workers == 1
    heartbeat_workers(db, [stale], now=now)
    assert Worker.get_by_id(stale).last_heartbeat == now


def test_one_orphan_in_each_table_is_reaped_by_a_single_call(db):
    make_job(db, None, "pack")
    make_car(db, preparation_id=None)
    make_directory(db, None, None)
    make_file(db, None, None)
    make_car_block(db, None)
    result = reap_orphans(db, time_budget=30)
    assert dict(result.deleted) == {"car_blocks": 1, "files": 1, "cars": 1,
                                    "directories": 1, "jobs": 1}
    for model in (Job, Car, Directory, File, CarBlock):
        assert model.select().count() == 0
    assert not result.budget_exhausted and result.failed_phases == ()


def test_rows_that_still_belong_to_a_preparation_are_not_reaped(db):
    src = make_source(db)
    job_id = make_job(db, src.attachment_id, "pack")
    file_id = make_file(db, src.attachment_id, src.root_directory_id)
    make_range(db, file_id, job_id)
    car_id = make_car(db, preparation_id=src.preparation_id, job_id=job_id)
    make_car_block(db, car_id, file_id)
    assert reap_orphans(db, time_budget=30).total == 0
    assert (Job.select().count(), File.select().count(), FileRange.select().count(),
            Car.select().count(), CarBlock.select().count(), Directory.select().count()) == (
        1, 1, 1, 1, 1, 1)


def test_batches_repeat_while_they_come_back_full(db):
    for _ in range(10):
        make_job(db, None, "pack")
        make_file(db, None, None)
    sizes = dict(DEFAULT_BATCH_SIZES, jobs=3, files=4)
    result = reap_orphans(db, time_budget=30, batch_sizes=sizes)
    assert (result["jobs"], result["files"]) == (10, 10)
    assert Job.select().count() == 0 and File.select().count() == 0


def test_cars_reaped_in_a_call_leave_no_orphaned_car_blocks_behind(db):
    car_id = make_car(db, preparation_id=None)
    for offset in range(5):
        make_car_block(db, car_id, offset=offset)
    result = reap_orphans(db, time_budget=30)
    assert (result["cars"], result["car_blocks"]) == (1, 5)
    assert CarBlock.select().count() == 0


def test_an_exhausted_budget_runs_one_batch_per_phase_and_says_so(db):
    for _ in range(5):
        make_job(db, None, "pack")
        make_file(db, None, None)
    ticks = iter(range(1000))
    result = reap_orphans(db, time_budget=0.5, batch_sizes=dict(DEFAULT_BATCH_SIZES, jobs=2,
                                                                  files=2),
                          clock=lambda: float(next(ticks)))
    assert result.budget_exhausted
    assert (result["jobs"], result["files"]) == (2, 2)
    assert Job.select().count() == 3 and File.select().count() == 3


def test_deleting_an_orphan_directory_removes_its_subtree_and_files(db):
    root = make_directory(db, None, None, name="")
    child = make_directory(db, None, root, name="a")
    grandchild = make_directory(db, None, child, name="b")
    make_file(db, None, grandchild)
    result = reap_orphans(db, time_budget=30, batch_sizes=dict(DEFAULT_BATCH_SIZES,
                                                               directories=1))
    assert Directory.select().count() == 0 and File.select().count() == 0
    assert result["directories"] >= 1
