"""Giving back, at once, the jobs of workers of this host whose process is gone.

A run killed by SIGKILL, the OOM killer or a power cut leaves its jobs `processing` under
worker rows that nobody heartbeats. The reaper gives them back only once those workers are
stale (`stale_after`, minutes), so a restarted `run --exit-on-complete` would find nothing
to claim and stop, and a DAG built then would silently lack those files. A worker row that
names this host and a process id that no longer exists is certainly dead, so the pool
rescues its jobs when it starts.

The rescue is the reaper's compare-and-set (`storage.reaping.rescue_jobs`): only jobs still
`processing` under that worker are reset. A live process with a reused pid counts as alive,
so the check can only err towards waiting for the reaper. Hosts must have distinct
hostnames (true of machines and Kubernetes pods): a worker row of another machine with the
same hostname would be taken for one of ours.
"""
from __future__ import annotations

import os
import socket

from loguru import logger

from storage import catalog
from storage.db import Database
from storage.models import JobState
from storage.reaping import rescue_jobs
from storage.workers import list_workers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def held_by_dead_local_workers(db: Database, prep_name: str | None = None
                               ) -> dict[str, list[int]]:
    """Processing jobs (of `prep_name`, or all) whose worker is a dead process of this host."""
    host = socket.gethostname()
    dead = {w.id for w in list_workers(db)
            if w.hostname == host and w.pid and w.pid != os.getpid() and not _alive(w.pid)}
    held: dict[str, list[int]] = {}
    if not dead:
        return held
    for job in catalog.list_jobs(db, preparation=prep_name, state=JobState.PROCESSING):
        if job.worker_id in dead:
            held.setdefault(job.worker_id, []).append(job.id)
    return held


def rescue_dead_local_workers(db: Database, prep_name: str | None = None) -> int:
    """Give back to `ready` the jobs held by killed processes of this host; returns how many.

    The dead workers' rows stay: the reaper deletes them once stale.
    """
    rescued = 0
    for worker_id, job_ids in held_by_dead_local_workers(db, prep_name).items():
        ids = rescue_jobs(db, worker_id, job_ids)
        rescued += len(ids)
        if ids:
            logger.warning("job(s) {} of worker {}, a process of this host that is gone, "
                           "back to ready", ids, worker_id)
    return rescued
