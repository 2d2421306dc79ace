"""Worker rows: register, heartbeat, deregister, list.

A worker row is a liveness record for one claimer identity. Jobs point at it through
`jobs.worker_id` (ON DELETE SET NULL), so deleting the row frees its `processing` jobs for
the next claim; the reaper deletes rows whose heartbeat went stale (storage.reaping).
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from typing import Iterable

from storage.db import Database
from storage.models import Worker, utcnow
from storage.retry import retrying
from storage.rows import WorkerRow

DATASET_WORKER = "dataset_worker"


def worker_row(w: Worker) -> WorkerRow:
    return WorkerRow(id=w.id, hostname=w.hostname, pid=w.pid, type=w.type,
                     last_heartbeat=w.last_heartbeat, started_at=w.started_at)


@retrying
def register_worker(db: Database, *, hostname: str | None = None, pid: int | None = None,
                    type: str = DATASET_WORKER, now: dt.datetime | None = None) -> str:
    """Insert a worker row with a fresh UUIDv4 and return its id."""
    now = now or utcnow()
    worker_id = str(uuid.uuid4())
    with db.atomic():
        Worker.insert(id=worker_id, hostname=hostname if hostname is not None else socket.gethostname(),
                      pid=pid if pid is not None else os.getpid(), type=type,
                      last_heartbeat=now, started_at=now).execute()
    return worker_id


@retrying
def heartbeat_workers(db: Database, worker_ids: Iterable[str], *,
                      now: dt.datetime | None = None) -> None:
    """Beat every worker in `worker_ids` in one statement.

    An upsert: a row the reaper deleted (we looked stale, but are alive) is re-created, with
    this process's hostname and pid.
    """
    ids = list(dict.fromkeys(worker_ids))
    if not ids:
        return
    now = now or utcnow()
    host, pid = socket.gethostname(), os.getpid()
    rows = [{"id": w, "last_heartbeat": now, "hostname": host, "pid": pid,
             "type": DATASET_WORKER, "started_at": now} for w in ids]
    with db.atomic():
        # Same upsert syntax on both backends (PostgreSQL ≥ 9.5, SQLite ≥ 3.24).
        (Worker.insert_many(rows)
         .on_conflict(conflict_target=[Worker.id], preserve=[Worker.last_heartbeat])
         .execute())


@retrying
def deregister_worker(db: Database, worker_id: str) -> None:
    """Delete the worker row; its jobs' `worker_id` becomes NULL (FK SET NULL)."""
    with db.atomic():
        Worker.delete().where(Worker.id == worker_id).execute()


@retrying
def list_workers(db: Database) -> list[WorkerRow]:
    """Every worker row, oldest first."""
    return [worker_row(w) for w in Worker.select().order_by(Worker.started_at, Worker.id)]
