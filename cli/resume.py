"""Continuing an interrupted `ez-prep`: find its preparation and make its jobs runnable again.

`ez-prep --name NAME` on an existing preparation of the same source and output picks up
where the last run stopped (Ctrl-C, a kill, a crash) instead of failing on the name.
"""
from __future__ import annotations

import os
import socket

from loguru import logger

from cli.app import fail
from storage import catalog, jobs
from storage.db import Database
from storage.models import JobState, JobType
from storage.reaping import rescue_jobs
from storage.workers import list_workers

PENDING = (JobState.READY, JobState.PROCESSING)


def find_resumable(db: Database, name: str, source: str, output: str) -> catalog.PreparationRow | None:
    """The preparation `name` if it exists over exactly `source` into `output`, else None.

    Raises:
        CliError: `name` exists but with other sources or outputs (resuming it would mix
            two datasets).
    """
    try:
        prep = catalog.get_preparation(db, name)
    except catalog.NotFound:
        return None
    st = catalog.preparation_status(db, prep.name)
    src = catalog.find_storage_by_path(db, source)
    out = catalog.find_storage_by_path(db, os.path.abspath(output))
    if src is None or out is None or st.sources != (src.name,) or out.name not in st.outputs:
        fail(f"preparation {prep.name!r} already exists with other sources or outputs "
             f"({', '.join(st.sources)} -> {', '.join(st.outputs) or 'inline only'}); "
             "choose another --name")
    return prep


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # exists, owned by someone else
        return True
    return True


def held_by_dead_local_workers(db: Database, prep_name: str | None = None) -> dict[str, list[int]]:
    """Processing jobs (of `prep_name`, or all) whose worker is a dead process of this host.

    Such jobs stay `processing` until the reaper finds their worker stale (`stale_after`,
    minutes): a killed run (SIGKILL, OOM, power loss) leaves them behind.
    """
    host = socket.gethostname()
    dead = {w.id for w in list_workers(db)
            if w.hostname == host and w.pid and w.pid != os.getpid() and not _alive(w.pid)}
    held: dict[str, list[int]] = {}
    for job in catalog.list_jobs(db, preparation=prep_name, state=JobState.PROCESSING):
        if job.worker_id in dead:
            held.setdefault(job.worker_id, []).append(job.id)
    return held


def rescue_dead_local_workers(db: Database, prep_name: str) -> int:
    """Give back to `ready` the jobs of `prep_name` held by killed processes of this host.

    Without this a resumed `ez-prep` would find nothing to do for minutes. Only workers
    registered by this host whose process no longer exists are touched; the rescue is a
    compare-and-set on worker and state. Returns the number of jobs rescued.
    """
    rescued = 0
    for worker_id, job_ids in held_by_dead_local_workers(db, prep_name).items():
        ids = rescue_jobs(db, worker_id, job_ids)
        rescued += len(ids)
        logger.info("job(s) {} of dead worker {} (this host) back to ready", ids, worker_id)
    # The dead workers' rows stay: the reaper deletes them once stale (they may still hold
    # jobs of other preparations).
    return rescued


def make_runnable(db: Database, prep_name: str) -> None:
    """Paused jobs resumed, failed ones restarted, so that the phases can run them again."""
    catalog.resume_preparation(db, prep_name)
    for job in catalog.list_jobs(db, preparation=prep_name, state=JobState.ERROR):
        jobs.restart_job(db, job.id)


def start_phase(db: Database, prep_name: str, job_type: str) -> None:
    """Start the scan or daggen jobs unless they exist already (pending or, for scan, done).

    A complete scan is not repeated on resume: resuming continues, it does not rescan.
    A complete daggen is restarted, so the DAG covers every piece packed since.
    """
    rows = catalog.list_jobs(db, preparation=prep_name, type=job_type)
    if any(r.state in PENDING for r in rows):
        return
    if job_type == JobType.SCAN and rows and all(r.state == JobState.COMPLETE for r in rows):
        return
    if job_type == JobType.SCAN:
        catalog.start_scan(db, prep_name)
    else:
        catalog.start_daggen(db, prep_name)


def unfinished_packs(db: Database, prep_name: str) -> list[catalog.JobListRow]:
    """Pack jobs that are neither complete nor failed (held by another process, or paused)."""
    return [j for j in catalog.list_jobs(db, preparation=prep_name, type=JobType.PACK)
            if j.state not in (JobState.COMPLETE, JobState.ERROR)]
