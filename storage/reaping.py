"""The reaper's queries: rescue the jobs of stale workers, and delete orphans (SPEC §5).

Stale rescue. A worker is stale when its heartbeat is older than `stale_after`. For each
stale worker separately (one short transaction each, so that no two workers' rows are ever
locked in varying order), within that transaction:

1. re-check that the worker is still stale (it may have come back since the list was read);
2. read its `processing` jobs (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so a job whose worker
   is writing it right now is left for the next cycle);
3. put them back to `ready` with a compare-and-set on `(id, worker_id, state='processing')`:
   a job that completed between the read and the write is not touched;
4. clear `worker_id` on its jobs in other states (paused or resumed jobs it still held);
5. delete the worker row if no job references it any more.

A rescued worker that is in fact alive loses its next compare-and-set and discards its
result; its heartbeat re-creates its row.

Orphan reaping. After a preparation is deleted, its rows lose their attachment or
preparation through ON DELETE SET NULL. Phases run in SPEC §5's order, each deleting
batches of orphans while a batch comes back full and the time budget lasts. A full pass is
repeated while it deleted something (deleting cars orphans their car blocks), so that one
call with enough budget leaves no orphan behind. PostgreSQL: each batch is its own
transaction with `SET LOCAL statement_timeout`. A failing phase is logged and the next one
still runs.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

from loguru import logger

from storage.db import Database
from storage.errors import StorageError
from storage.models import Job, JobState, Worker, utcnow
from storage.retry import retrying

STATEMENT_TIMEOUT = "2min"  # below half the 5 min cycle: a stuck cycle cannot overlap the next

# (table, orphan column) in SPEC §5 order, with the SPEC's batch sizes.
PHASES: tuple[tuple[str, str], ...] = (
    ("car_blocks", "car_id"),
    ("files", "attachment_id"),
    ("cars", "preparation_id"),
    ("directories", "attachment_id"),
    ("jobs", "attachment_id"),
)
DEFAULT_BATCH_SIZES: Mapping[str, int] = {
    "car_blocks": 10_000, "files": 200, "cars": 100, "directories": 100, "jobs": 100,
}


@dataclass(frozen=True, slots=True)
class RescueResult:
    """What one stale rescue did."""

    stale_workers: int = 0
    rescued_job_ids: tuple[int, ...] = ()   # processing → ready
    detached_jobs: int = 0                  # other states: worker_id cleared
    deleted_workers: int = 0

    @property
    def rescued_jobs(self) -> int:
        return len(self.rescued_job_ids)


@dataclass(frozen=True, slots=True)
class ReapResult:
    """Rows deleted per table by one orphan reaping, and whether it finished."""

    deleted: Mapping[str, int] = field(default_factory=dict)
    budget_exhausted: bool = False
    failed_phases: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(self.deleted.values())

    def __getitem__(self, table: str) -> int:
        return self.deleted.get(table, 0)


def _cutoff(stale_after: float | dt.timedelta, now: dt.datetime) -> dt.datetime:
    delta = stale_after if isinstance(stale_after, dt.timedelta) else dt.timedelta(
        seconds=stale_after)
    return now - delta


@retrying
def stale_workers(db: Database, *, stale_after: float | dt.timedelta,
                  now: dt.datetime | None = None) -> list[str]:
    """Ids of workers whose last heartbeat is older than `stale_after`."""
    cutoff = _cutoff(stale_after, now or utcnow())
    return [w for (w,) in Worker.select(Worker.id).where(Worker.last_heartbeat < cutoff)
            .order_by(Worker.id).tuples()]


@retrying
def rescue_jobs(db: Database, worker_id: str, job_ids: list[int], *,
                now: dt.datetime | None = None) -> list[int]:
    """processing → ready for those of `job_ids` still processing under `worker_id`.

    The compare-and-set half of the rescue, on its own so that a test can run it against a
    job that changed after it was read. Returns the ids actually reset.
    """
    if not job_ids:
        return []
    now = now or utcnow()
    with db.atomic():
        return _reset(worker_id, job_ids, now)


def _reset(worker_id: str, job_ids: list[int], now: dt.datetime) -> list[int]:
    won = [j for (j,) in Job.select(Job.id).where(
        Job.id.in_(job_ids) & (Job.worker == worker_id)
        & (Job.state == JobState.PROCESSING)).tuples()]
    if won:
        # The WHERE repeats the CAS: on PostgreSQL the rows are locked by now, on SQLite the
        # IMMEDIATE transaction holds the write lock, so the select above cannot go stale.
        (Job.update(state=JobState.READY, worker=None, updated_at=now)
         .where(Job.id.in_(won) & (Job.worker == worker_id)
                & (Job.state == JobState.PROCESSING)).execute())
    return won


@retrying
def _rescue_worker(db: Database, worker_id: str, cutoff: dt.datetime,
                   now: dt.datetime) -> tuple[list[int], int, int] | None:
    """One stale worker, one transaction: (rescued ids, detached, deleted) or None."""
    with db.atomic():
        still_stale = Worker.select(Worker.id).where(
            (Worker.id == worker_id) & (Worker.last_heartbeat < cutoff)).exists()
        if not still_stale:
            return None
        query = Job.select(Job.id).where((Job.worker == worker_id)
                                         & (Job.state == JobState.PROCESSING))
        if db.is_postgres:
            # Skip rows a live transaction holds; they are looked at again next cycle.
            query = query.for_update("FOR UPDATE SKIP LOCKED")
        # SQLite has no row locks (and peewee refuses FOR UPDATE there); the IMMEDIATE
        # transaction already excludes every other writer.
        seen = [j for (j,) in query.tuples()]
        rescued = _reset(worker_id, seen, now)
        detached = (Job.update(worker=None, updated_at=now)
                    .where((Job.worker == worker_id) & (Job.state != JobState.PROCESSING))
                    .execute())
        referenced = Job.select(Job.id).where(Job.worker == worker_id).exists()
        deleted = 0 if referenced else Worker.delete().where(Worker.id == worker_id).execute()
    return rescued, detached, deleted


def rescue_stale_workers(db: Database, *, stale_after: float | dt.timedelta,
                         now: dt.datetime | None = None) -> RescueResult:
    """Give the `processing` jobs of every stale worker back to `ready` (see module doc)."""
    now = now or utcnow()
    cutoff = _cutoff(stale_after, now)
    workers = stale_workers(db, stale_after=stale_after, now=now)
    rescued: list[int] = []
    detached = deleted = 0
    for worker_id in workers:
        try:
            outcome = _rescue_worker(db, worker_id, cutoff, now)
        except StorageError as exc:
            logger.bind(worker_id=worker_id, action="rescue").error(
                "rescue of stale worker {} failed: {}", worker_id, exc)
            continue
        if outcome is None:
            continue
        ids, n_detached, n_deleted = outcome
        for job_id in ids:
            logger.bind(worker_id=worker_id, job_id=job_id, action="rescue").warning(
                "job {} of stale worker {} rescued to ready", job_id, worker_id)
        rescued.extend(ids)
        detached += n_detached
        deleted += n_deleted
    return RescueResult(stale_workers=len(workers), rescued_job_ids=tuple(rescued),
                        detached_jobs=detached, deleted_workers=deleted)


@retrying
def _delete_batch(db: Database, table: str, column: str, limit: int) -> int:
    """Delete up to `limit` rows of `table` whose `column` IS NULL; one transaction."""
    # Identifiers come from PHASES only, never from a caller.
    if db.is_postgres:
        sql = (f'DELETE FROM "{table}" WHERE id IN '
               f'(SELECT id FROM "{table}" WHERE "{column}" IS NULL LIMIT %s)')
        with db.atomic():
            # A statement timeout bounds a batch stuck behind a lock; SET LOCAL ends with
            # the transaction, so the pooled connection keeps its normal settings.
            db.pw.execute_sql(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
            return db.pw.execute_sql(sql, (limit,)).rowcount
    # SQLite: the same IN-subquery form (it has no statement timeout; the busy timeout
    # bounds the wait for the write lock instead).
    sql = (f'DELETE FROM "{table}" WHERE id IN '
           f'(SELECT id FROM "{table}" WHERE "{column}" IS NULL LIMIT ?)')
    with db.atomic():
        return db.pw.execute_sql(sql, (limit,)).rowcount


def reap_orphans(db: Database, *, time_budget: float,
                 batch_sizes: Mapping[str, int] = DEFAULT_BATCH_SIZES,
                 now: dt.datetime | None = None,
                 clock: Callable[[], float] = time.monotonic) -> ReapResult:
    """Delete orphaned rows in SPEC §5 order, batch after batch, within `time_budget` s.

    Args:
        time_budget: seconds; no new batch starts after it has run out (the batch in flight
            finishes). At least one batch of each phase runs in every call.
        batch_sizes: rows per batch for each table (SPEC §5's by default).
        now: accepted like every time-dependent storage call; orphan reaping does not
            depend on the wall clock, only on `clock`.
        clock: the monotonic clock the budget is measured on.
    """
    del now  # orphanhood does not depend on time
    deadline = clock() + time_budget
    deleted = {table: 0 for table, _ in PHASES}
    failed: list[str] = []
    exhausted = False
    first_pass = True
    while True:
        pass_deleted = 0
        for table, column in PHASES:
            if table in failed:
                continue
            limit = batch_sizes.get(table, DEFAULT_BATCH_SIZES[table])
            ran_once = False
            while True:
                if ran_once or not first_pass:
                    if clock() >= deadline:
                        exhausted = True
                        break
                ran_once = True
                try:
                    n = _delete_batch(db, table, column, limit)
                except StorageError as exc:
                    logger.bind(action="reap").error("reaping orphan {} failed: {}", table, exc)
                    failed.append(table)
                    break
                deleted[table] += n
                pass_deleted += n
                if n < limit:
                    break
        first_pass = False
        if pass_deleted == 0 or exhausted:
            break
        if clock() >= deadline:
            exhausted = True
            break
    result = ReapResult(deleted=MappingProxyType(deleted), budget_exhausted=exhausted,
                        failed_phases=tuple(failed))
    if result.total:
        logger.bind(action="reap").info("reaped orphans: {}",
                                         {k: v for k, v in deleted.items() if v})
    return result
