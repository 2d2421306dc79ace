"""Continuing an interrupted `ez-prep`: find its preparation and make its jobs runnable again.

`ez-prep --name NAME` on an existing preparation of the same source and output picks up
where the last run stopped (Ctrl-C, a kill, a crash) instead of failing on the name.
"""
from __future__ import annotations

import os

from cli.app import fail
from storage import catalog, jobs
from storage.db import Database
from storage.models import JobState, JobType

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
