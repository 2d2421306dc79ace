"""Jobs: the claim, the worker's compare-and-set transitions, and the user's transitions.

State model (SPEC §2, CONTRACTS.md "Job semantics decided for everyone"):

    created ─► ready ──claim──► processing ──complete──► complete
                 ▲   ◄─release/retry_later─┘  └──fail──► error
                 │                                          │
    paused ◄─pause─ (ready|processing)      restart ◄───────┘ (also from complete, paused)

- The claim takes a job only when `attachment_id IS NOT NULL` (orphans are never claimed)
  and `worker_id IS NULL`: `ready` whose `not_before` has passed, or `processing` whose
  worker row is gone. It counts the attempt; a job that already used `max_attempts` goes
  to `error` ("quarantined ...") in the same transaction and the claim moves on.
- Every worker-side write is a compare-and-set on `(id, worker_id, state='processing')`
  and returns whether it won. A lost CAS is an ordinary outcome, never an exception.
- Pause and resume keep `worker_id`; the claim ignores the job until that worker calls
  `let_go` (or its row is deleted), so a resumed job never runs on two workers at once.

Every public function is one whole transaction, retried by `storage.retry`.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable, Iterable, Sequence

import peewee as pw
from loguru import logger

from storage.db import Database
from storage.models import (CLAIMABLE_WHERE, File, FileRange, Job, JobState, JobType,
                            OutputAttachment, Preparation, SourceAttachment, Storage, utcnow)
from storage.retry import retrying
from storage.rows import (AttachmentRow, FileRow, JobRow, PreparationRow, RangeRow,
                          StorageRow)

CLAIM_ORDER: tuple[str, ...] = (JobType.DAGGEN, JobType.SCAN, JobType.PACK)

_QUARANTINE_MESSAGE_SQL = "'quarantined after ' || attempts || ' attempts that never finished'"


# ---------------------------------------------------------------------------------------
# Loading: peewee instances → frozen rows.

def storage_row(s: Storage) -> StorageRow:
    return StorageRow(id=s.id, name=s.name, type=s.type, path=s.path, config=dict(s.config),
                      client_config=dict(s.client_config))


def preparation_row(p: Preparation) -> PreparationRow:
    return PreparationRow(id=p.id, name=p.name, max_size=p.max_size, piece_size=p.piece_size,
                          min_piece_size=p.min_piece_size, no_inline=p.no_inline,
                          no_dag=p.no_dag, delete_after_export=p.delete_after_export)


def file_row(f: File) -> FileRow:
    return FileRow(id=f.id, path=f.path, size=f.size, last_modified_nano=f.last_modified_nano,
                   hash=f.hash, cid=f.cid, directory_id=f.directory_id,
                   attachment_id=f.attachment_id)


def job_row(job: Job, attachment: AttachmentRow | None = None,
            ranges: tuple[RangeRow, ...] = ()) -> JobRow:
    return JobRow(id=job.id, type=job.type, state=job.state, attempts=job.attempts,
                  worker_id=job.worker_id, attachment_id=job.attachment_id,
                  error_message=job.error_message, claimed_at=job.claimed_at,
                  attachment=attachment, ranges=ranges,
                  error_stack_trace=job.error_stack_trace, not_before=job.not_before,
                  progress_bytes=job.progress_bytes, total_bytes=job.total_bytes)


def load_attachment(attachment_id: int) -> AttachmentRow | None:
    """A source attachment with its preparation, source storage and output storages."""
    att = (SourceAttachment.select(SourceAttachment, Preparation, Storage)
           .join(Preparation).switch(SourceAttachment).join(Storage)
           .where(SourceAttachment.id == attachment_id).first())
    if att is None:
        return None
    outputs = (Storage.select()
               .join(OutputAttachment, on=(OutputAttachment.storage == Storage.id))
               .where(OutputAttachment.preparation == att.preparation_id)
               .order_by(Storage.id))
    return AttachmentRow(id=att.id, preparation=preparation_row(att.preparation),
                         source=storage_row(att.storage),
                         outputs=tuple(storage_row(s) for s in outputs))


def load_ranges(job_id: int) -> tuple[RangeRow, ...]:
    """A pack job's ranges with their files, in range-id order (the order of the CAR)."""
    query = (FileRange.select(FileRange, File).join(File)
             .where(FileRange.job == job_id).order_by(FileRange.id))
    return tuple(RangeRow(id=r.id, offset=r.offset, length=r.length, cid=r.cid,
                          job_id=r.job_id, file=file_row(r.file)) for r in query)


def _load(job_id: int) -> JobRow | None:
    job = Job.get_or_none(Job.id == job_id)
    if job is None:
        return None
    attachment = load_attachment(job.attachment_id) if job.attachment_id is not None else None
    ranges = load_ranges(job.id) if job.type == JobType.PACK else ()
    return job_row(job, attachment, ranges)


@retrying
def load_job(db: Database, job_id: int) -> JobRow | None:
    """The job with its attachment (preparation, source, outputs) and, for pack, its ranges.

    The same loader the claim uses. None when the job does not exist.
    """
    return _load(job_id)


@retrying
def get_job(db: Database, job_id: int) -> JobRow | None:
    """The job row alone (no attachment, no ranges); None when it does not exist."""
    job = Job.get_or_none(Job.id == job_id)
    return job_row(job) if job is not None else None


@retrying
def job_states(db: Database, job_ids: Iterable[int]) -> dict[int, str]:
    """The state of each existing job among `job_ids` (missing ids are absent)."""
    ids = list(job_ids)
    out: dict[int, str] = {}
    for start in range(0, len(ids), 500):  # stay far below SQLite's parameter limit
        chunk = ids[start:start + 500]
        for jid, state in Job.select(Job.id, Job.state).where(Job.id.in_(chunk)).tuples():
            out[jid] = state
    return out


# ---------------------------------------------------------------------------------------
# The claim.

def _claim_one(db: Database, job_type: str, worker_id: str, max_attempts: int,
               now: dt.datetime) -> tuple[int, str, int] | None:
    """Claim (or quarantine) the lowest claimable job of one type: (id, state, attempts)."""
    stamp = Job.claimed_at.db_value(now)
    over = "attempts >= {p}"
    set_clause = f"""
        state = CASE WHEN {over} THEN 'error' ELSE 'processing' END,
        worker_id = CASE WHEN {over} THEN NULL ELSE {{p}} END,
        attempts = CASE WHEN {over} THEN attempts ELSE attempts + 1 END,
        claimed_at = CASE WHEN {over} THEN claimed_at ELSE {{p}} END,
        error_message = CASE WHEN {over} THEN {_QUARANTINE_MESSAGE_SQL} ELSE '' END,
        updated_at = {{p}}"""
    candidate = f"""
        SELECT id FROM jobs
        WHERE type = {{p}} AND {CLAIMABLE_WHERE}
          AND (state = 'processing' OR not_before IS NULL OR not_before <= {{p}})
        ORDER BY id LIMIT 1"""
    set_params = [max_attempts, max_attempts, worker_id, max_attempts, max_attempts, stamp,
                  max_attempts, stamp]
    if db.is_postgres:
        # Row locks: SKIP LOCKED lets concurrent claimers pass over each other's candidate,
        # and the lock holds until the UPDATE in the same statement has written it.
        sql = (f"WITH candidate AS ({candidate} FOR UPDATE SKIP LOCKED) "
               f"UPDATE jobs SET {set_clause} FROM candidate WHERE jobs.id = candidate.id "
               "RETURNING jobs.id, jobs.state, jobs.attempts").replace("{p}", "%s")
        params = [job_type, stamp, *set_params]  # the CTE comes first in the text
    else:
        # No row locks in SQLite: one atomic UPDATE inside the IMMEDIATE transaction, which
        # already holds the database's write lock, so no other writer can interleave.
        sql = (f"UPDATE jobs SET {set_clause} WHERE id = ({candidate}) "
               "RETURNING id, state, attempts").replace("{p}", "?")
        params = [*set_params, job_type, stamp]
    row = db.pw.execute_sql(sql, params).fetchone()
    return (row[0], row[1], row[2]) if row else None


@retrying
def claim_job(db: Database, worker_id: str, types: Sequence[str] = CLAIM_ORDER, *,
              max_attempts: int, now: dt.datetime | None = None) -> JobRow | None:
    """Claim one job for `worker_id`, trying `types` in the order given.

    Returns the job, now `processing` under `worker_id`, with its attachment (and, for a
    pack job, its ranges) loaded; None when nothing is claimable. Jobs that already used
    `max_attempts` are moved to `error` on the way and never returned.
    """
    now = now or utcnow()
    with db.atomic():
        for job_type in types:
            while True:
                hit = _claim_one(db, job_type, worker_id, max_attempts, now)
                if hit is None:
                    break
                job_id, state, attempts = hit
                if state == JobState.ERROR:
                    logger.bind(job_id=job_id, action="claim").warning(
                        "job {} quarantined after {} attempts that never finished",
                        job_id, attempts)
                    continue
                return _load(job_id)
    return None


# ---------------------------------------------------------------------------------------
# The worker's compare-and-set transitions.

def _owned(job_id: int, worker_id: str):
    return ((Job.id == job_id) & (Job.worker == worker_id)
            & (Job.state == JobState.PROCESSING))


def _cas(job_id: int, worker_id: str, action: str, **values: object) -> bool:
    won = Job.update(**values).where(_owned(job_id, worker_id)).execute() == 1
    if not won:
        logger.bind(job_id=job_id, worker_id=worker_id, action=action).warning(
            "lost compare-and-set on job {}: no longer processing under this worker", job_id)
    return won


@retrying
def complete_job(db: Database, job_id: int, worker_id: str,
                 apply: Callable[[], object] | None = None, *,
                 now: dt.datetime | None = None) -> bool:
    """processing → complete, then `apply()` (the job's result rows) in the same transaction.

    Returns False, with nothing written and `apply` not called, when the job is no longer
    processing under `worker_id`. If `apply` raises, everything is rolled back and the
    error re-raised.
    """
    now = now or utcnow()
    with db.atomic():
        if not _cas(job_id, worker_id, "complete", state=JobState.COMPLETE, worker=None,
                    error_message="", error_stack_trace="", not_before=None, updated_at=now):
            return False
        if apply is not None:
            apply()
    return True


@retrying
def fail_job(db: Database, job_id: int, worker_id: str, message: str, stack_trace: str = "",
             *, now: dt.datetime | None = None) -> bool:
    """processing → error, storing the message and traceback."""
    with db.atomic():
        return _cas(job_id, worker_id, "fail", state=JobState.ERROR, worker=None,
                    error_message=message, error_stack_trace=stack_trace,
                    updated_at=now or utcnow())


@retrying
def release_job(db: Database, job_id: int, worker_id: str, *,
                now: dt.datetime | None = None) -> bool:
    """processing → ready (cancel, shutdown); the attempt it used is given back."""
    with db.atomic():
        return _cas(job_id, worker_id, "release", state=JobState.READY, worker=None,
                    error_message="", error_stack_trace="",
                    attempts=pw.Case(None, [(Job.attempts > 0, Job.attempts - 1)], 0),
                    updated_at=now or utcnow())


@retrying
def retry_later(db: Database, job_id: int, worker_id: str, not_before: dt.datetime,
                message: str = "", *, now: dt.datetime | None = None) -> bool:
    """processing → ready, claimable again from `not_before`; the attempt stays counted."""
    with db.atomic():
        return _cas(job_id, worker_id, "retry_later", state=JobState.READY, worker=None,
                    not_before=not_before, error_message=message, updated_at=now or utcnow())


@retrying
def let_go(db: Database, job_id: int, worker_id: str) -> bool:
    """Clear our `worker_id` from a job a user paused or resumed under us (paused/ready)."""
    with db.atomic():
        n = (Job.update(worker=None, updated_at=utcnow())
             .where((Job.id == job_id) & (Job.worker == worker_id)
                    & Job.state.in_([JobState.PAUSED, JobState.READY]))
             .execute())
    return n == 1


@retrying
def update_progress(db: Database, job_id: int, worker_id: str, done: int, total: int) -> bool:
    """Record bytes done/total of a running job; False when we no longer own it."""
    with db.atomic():
        n = (Job.update(progress_bytes=done, total_bytes=total, updated_at=utcnow())
             .where(_owned(job_id, worker_id)).execute())
    return n == 1


# ---------------------------------------------------------------------------------------
# The user's transitions.

@retrying
def pause_job(db: Database, job_id: int) -> bool:
    """ready/processing → paused; `worker_id` is kept until that worker lets go."""
    with db.atomic():
        n = (Job.update(state=JobState.PAUSED, updated_at=utcnow())
             .where((Job.id == job_id)
                    & Job.state.in_([JobState.READY, JobState.PROCESSING])).execute())
    return n == 1


@retrying
def resume_job(db: Database, job_id: int) -> bool:
    """paused → ready; `worker_id` is kept, so no one claims it before the old worker lets go."""
    with db.atomic():
        n = (Job.update(state=JobState.READY, error_message="", error_stack_trace="",
                        not_before=None, updated_at=utcnow())
             .where((Job.id == job_id) & (Job.state == JobState.PAUSED)).execute())
    return n == 1


@retrying
def restart_job(db: Database, job_id: int) -> bool:
    """error/complete/paused → ready, with attempts, error fields and progress reset."""
    with db.atomic():
        n = (Job.update(state=JobState.READY, attempts=0, error_message="",
                        error_stack_trace="", not_before=None, progress_bytes=0,
                        updated_at=utcnow())
             .where((Job.id == job_id) & Job.state.in_(
                 [JobState.ERROR, JobState.COMPLETE, JobState.PAUSED])).execute())
    return n == 1
