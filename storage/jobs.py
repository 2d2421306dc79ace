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

Every public function is one whole transaction (the claim: its transaction, then a read of
a pack job's ranges), retried by `storage.retry`.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import weakref
from typing import Any, Callable, Iterable, Sequence

import peewee as pw
from loguru import logger

from storage.db import Database
from storage.job_rows import (ATTACHMENT_SELECT, JOB_COLUMNS, PG_OUTPUTS_JSON,
                              PG_RANGES_JSON, attachment_join, finish_row, job_from,
                              load_job_row, load_ranges, ranges_from_json, select_list)
from storage.models import CLAIMABLE_WHERE, Job, JobState, JobType, utcnow
from storage.retry import retrying, sqlstate, with_retry
from storage.rows import JobRow

CLAIM_ORDER: tuple[str, ...] = (JobType.DAGGEN, JobType.SCAN, JobType.PACK)

_QUARANTINE_MESSAGE_SQL = "'quarantined after ' || attempts || ' attempts that never finished'"


# ---------------------------------------------------------------------------------------
# Loading (the SQL lives in storage.job_rows).

def job_row(job: Job) -> JobRow:
    """The JobRow of a peewee instance, without attachment or ranges."""
    return JobRow(id=job.id, type=job.type, state=job.state, attempts=job.attempts,
                  worker_id=job.worker_id, attachment_id=job.attachment_id,
                  error_message=job.error_message, claimed_at=job.claimed_at,
                  error_stack_trace=job.error_stack_trace, not_before=job.not_before,
                  progress_bytes=job.progress_bytes, total_bytes=job.total_bytes)


@retrying
def load_job(db: Database, job_id: int) -> JobRow | None:
    """The job with its attachment (preparation, source, outputs) and, for pack, its ranges.

    The same loader the claim uses. None when the job does not exist.
    """
    return load_job_row(db, job_id)


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

# The claim, written once with named parameters (:type, :now, :max, :worker).
_OVER = "attempts >= :max"
_CLAIM_SET = f"""
    state = CASE WHEN {_OVER} THEN 'error' ELSE 'processing' END,
    worker_id = CASE WHEN {_OVER} THEN NULL ELSE :worker END,
    attempts = CASE WHEN {_OVER} THEN attempts ELSE attempts + 1 END,
    claimed_at = CASE WHEN {_OVER} THEN claimed_at ELSE :now END,
    error_message = CASE WHEN {_OVER} THEN {_QUARANTINE_MESSAGE_SQL} ELSE '' END,
    updated_at = :now"""
_CANDIDATE = f"""
    SELECT id FROM jobs
    WHERE type = :type AND {CLAIMABLE_WHERE}
      AND (state = 'processing' OR not_before IS NULL OR not_before <= :now)
    ORDER BY id LIMIT 1"""

# PostgreSQL: row locks. SKIP LOCKED lets concurrent claimers pass over each other's
# candidate, and the lock holds until the UPDATE in the same statement has written it. The
# claimed row comes back joined with its attachment, outputs and ranges: one round trip.
# It is a prepared statement (once per connection), because planning this statement costs
# more server time than running it.
_PG_CLAIM_NAME = "pieceworks_claim_v1"
_PG_CLAIM_SQL = (
    f"WITH candidate AS ({_CANDIDATE} FOR UPDATE SKIP LOCKED), "
    f"claimed AS (UPDATE jobs SET {_CLAIM_SET} FROM candidate "
    f"WHERE jobs.id = candidate.id RETURNING {select_list('jobs', JOB_COLUMNS)}) "
    f"SELECT {select_list('j', JOB_COLUMNS)}, {ATTACHMENT_SELECT}, {PG_OUTPUTS_JSON}, "
    f"{PG_RANGES_JSON} FROM claimed j{attachment_join('j')}"
).replace(":type", "$1").replace(":now", "$2").replace(":max", "$3").replace(":worker", "$4")
_pg_prepared: "weakref.WeakSet[Any]" = weakref.WeakSet()  # connections that have it

# SQLite: no row locks. One atomic UPDATE inside the IMMEDIATE transaction, which already
# holds the database's write lock, so no other writer can interleave. SQLite has no UPDATE
# inside a WITH, so the attachment is read by a second statement (no round trip to save).
_SQLITE_CLAIM_SQL = (f"UPDATE jobs SET {_CLAIM_SET} WHERE id = ({_CANDIDATE}) "
                     f"RETURNING {', '.join(JOB_COLUMNS)}")


def _claim_one(db: Database, job_type: str, worker_id: str, max_attempts: int,
               now: dt.datetime, prefix: str = "") -> JobRow | None:
    """Claim (or quarantine) the lowest claimable job of one type, loaded.

    `prefix`: PostgreSQL statements sent ahead in the same round trip.
    """
    stamp = Job.claimed_at.db_value(now)
    if db.is_postgres:
        conn = db.pw.connection()
        if conn not in _pg_prepared:
            db.pw.execute_sql(f"PREPARE {_PG_CLAIM_NAME} (text, timestamp, integer, text) AS "
                              f"{_PG_CLAIM_SQL}")
            _pg_prepared.add(conn)
        try:
            row = db.pw.execute_sql(f"{prefix}EXECUTE {_PG_CLAIM_NAME} (%s, %s, %s, %s)",
                                    (job_type, stamp, max_attempts, worker_id)).fetchone()
        except pw.DatabaseError as exc:
            if sqlstate(exc) == "26000":
                # Gone (a pooler ran DISCARD ALL): prepare it again on the retry, which
                # storage.retry grants for SQLSTATE 26000.
                _pg_prepared.discard(conn)
            raise
        if row is None:
            return None
        if row[2] != JobState.PROCESSING:
            return job_from(row[:len(JOB_COLUMNS)])
        job = finish_row(db, row[:-1], ranges=False)
        return job if row[-1] is None else dataclasses.replace(
            job, ranges=ranges_from_json(row[-1]))
    row = db.pw.execute_sql(_SQLITE_CLAIM_SQL, {"type": job_type, "now": stamp,
                                                "max": max_attempts,
                                                "worker": worker_id}).fetchone()
    if row is None:
        return None
    if row[2] != JobState.PROCESSING:
        return job_from(row)
    return load_job_row(db, row[0], ranges=False)


def _adopt(db: Database, worker_id: str) -> JobRow | None:
    """A job already processing under `worker_id`: our own claim whose commit went through
    although the connection broke before we heard so. Checked only when retrying a claim."""
    p = "%s" if db.is_postgres else "?"
    row = db.pw.execute_sql(f"SELECT id FROM jobs WHERE worker_id = {p} AND state = "
                            f"'processing' ORDER BY id LIMIT 1", (worker_id,)).fetchone()
    return load_job_row(db, row[0], ranges=False) if row else None


def _claim_tx(db: Database, worker_id: str, types: Sequence[str], max_attempts: int,
              now: dt.datetime, adopt: bool) -> tuple[JobRow | None, bool]:
    """The claim's one transaction: (the job or None, whether its ranges came with it).

    PostgreSQL's claim statement brings a pack job's ranges along (possibly none); an
    adopted job and SQLite's claim come without them.
    """
    with db.atomic():
        # PostgreSQL: losing a claim in a server crash is harmless (the job is claimable
        # again, and the worker's later compare-and-set fails), so the claim's commit need
        # not wait for the WAL flush; the completion, with its results, still does. Sent
        # with the first claim statement to save a round trip.
        prefix = "SET LOCAL synchronous_commit = off; " if db.is_postgres else ""
        if adopt and (mine := _adopt(db, worker_id)) is not None:
            return mine, False
        for job_type in types:
            while True:
                job = _claim_one(db, job_type, worker_id, max_attempts, now, prefix)
                prefix = ""
                if job is None:
                    break
                if job.state != JobState.ERROR:
                    return job, db.is_postgres
                logger.bind(job_id=job.id, action="claim").warning(
                    "job {} quarantined after {} attempts that never finished",
                    job.id, job.attempts)
    return None, False


def claim_job(db: Database, worker_id: str, types: Sequence[str] = CLAIM_ORDER, *,
              max_attempts: int, now: dt.datetime | None = None) -> JobRow | None:
    """Claim one job for `worker_id`, trying `types` in the order given.

    Returns the job, now `processing` under `worker_id`, with its attachment (and, for a
    pack job, its ranges) loaded; None when nothing is claimable. Jobs that already used
    `max_attempts` are moved to `error` on the way and never returned.
    """
    now = now or utcnow()
    tries = itertools.count()

    def once(db: Database) -> tuple[JobRow | None, bool]:
        return _claim_tx(db, worker_id, types, max_attempts, now, adopt=next(tries) > 0)

    claimed, with_ranges = with_retry(once, db, what="claim_job")
    if claimed is None or claimed.type != JobType.PACK or with_ranges:
        return claimed
    # SQLite: the ranges are read after the commit (SPEC §3), keeping the write lock short.
    # They cannot change under us: only this job's worker writes them, and the job is ours.
    return dataclasses.replace(claimed, ranges=_ranges(db, claimed.id))


@retrying
def _ranges(db: Database, job_id: int) -> tuple:
    return load_ranges(db, job_id)


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
    stamp = Job.updated_at.db_value(now or utcnow())
    if apply is None:
        # One statement is its own transaction: no BEGIN/COMMIT round trips to pay.
        return _complete_cas(db, job_id, worker_id, stamp)
    with db.atomic():
        if not _complete_cas(db, job_id, worker_id, stamp):
            return False
        apply()
    return True


def _complete_cas(db: Database, job_id: int, worker_id: str, stamp: object) -> bool:
    """The compare-and-set of `complete_job`, as plain SQL: it runs once per job."""
    p = "%s" if db.is_postgres else "?"  # the statement is the same on both backends
    sql = ("UPDATE jobs SET state = 'complete', worker_id = NULL, error_message = '', "
           f"error_stack_trace = '', not_before = NULL, updated_at = {p} "
           f"WHERE id = {p} AND worker_id = {p} AND state = 'processing'")
    won = db.pw.execute_sql(sql, (stamp, job_id, worker_id)).rowcount == 1
    if not won:
        logger.bind(job_id=job_id, worker_id=worker_id, action="complete").warning(
            "lost compare-and-set on job {}: no longer processing under this worker", job_id)
    return won


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
