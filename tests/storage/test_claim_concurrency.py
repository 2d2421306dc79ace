"""Exclusive claims across processes and threads; orphans never claimed under concurrent deletes."""
from __future__ import annotations

import random
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from storage.deletion import delete_preparation
from storage.errors import Conflict
from storage.jobs import claim_job, complete_job
from storage.models import Job, JobState, SourceAttachment
from storage.workers import register_worker
from tests.factories import make_job, make_jobs, make_source

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_processes_of_eight_threads_claim_each_of_5000_jobs_exactly_once(db, db_url,
                                                                          tmp_path):
    src = make_source(db)
    make_jobs(db, src.attachment_id, 5000, "pack")
    outs = [tmp_path / f"claims-{i}.txt" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "tests.storage.drain", db_url, "8",
                               str(out)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for out in outs]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]
    claims = [line.split() for out in outs for line in out.read_text().splitlines()]
    counts = Counter(int(job_id) for job_id, _ in claims)
    assert len(counts) == 5000
    assert max(counts.values()) == 1
    assert all(done == "1" for _, done in claims)
    assert Job.select().where(Job.state == JobState.COMPLETE).count() == 5000
    # Both processes did part of the work (otherwise the test proved nothing).
    assert all(out.read_text().strip() for out in outs)


@pytest.mark.parametrize("job_type", ["scan", "pack", "daggen"])
def test_orphaned_jobs_of_every_type_are_never_claimed(db, job_type):
    src = make_source(db)
    for state in ("ready", "processing"):
        make_job(db, src.attachment_id, job_type, state=state)
    # Remove the attachment under them directly (the deletion API would refuse while one
    # is processing): ON DELETE SET NULL orphans both, as it did for Singularity's #680.
    SourceAttachment.delete().where(SourceAttachment.id == src.attachment_id).execute()
    worker = register_worker(db)
    assert claim_job(db, worker, [job_type], max_attempts=3) is None
    assert Job.select().where(Job.attachment.is_null()).count() == 2


def test_orphans_are_never_claimed_while_preparations_are_deleted_concurrently(db):
    rng = random.Random(20261203)
    sources = [make_source(db) for _ in range(12)]
    for src in sources:
        for job_type in ("scan", "daggen"):
            make_job(db, src.attachment_id, job_type)
        make_jobs(db, src.attachment_id, 15, "pack")
    make_jobs(db, None, 20, "pack")  # orphans from the start
    deleted: set[int] = set()
    missing_attachment: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def claimer() -> None:
        try:
            worker = register_worker(db)
            while not stop.is_set():
                job = claim_job(db, worker, max_attempts=3)
                if job is None:
                    break
                if job.attachment is None:
                    missing_attachment.append(job.id)
                assert complete_job(db, job.id, worker)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            db.close()

    def deleter() -> None:
        try:
            for src in rng.sample(sources, 6):
                for _ in range(200):
                    try:
                        delete_preparation(db, src.preparation_id)
                        deleted.add(src.preparation_id)
                        break
                    except Conflict:
                        continue  # one of its jobs is being processed: try again
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    threads.append(threading.Thread(target=deleter))
    rng.shuffle(threads)
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stop.set()
    assert not errors, errors
    assert missing_attachment == []
    assert deleted, "the deleter never got to delete a preparation"
    orphans = list(Job.select().where(Job.attachment.is_null()))
    # An orphan may have completed before its preparation went; none was claimed after.
    assert all(j.state in (JobState.READY, JobState.COMPLETE) for j in orphans)
    assert all(j.attempts == 0 for j in orphans if j.state == JobState.READY)
    assert Job.select().where(Job.state == JobState.PROCESSING).count() == 0
