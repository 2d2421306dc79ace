"""Run in a fresh interpreter by tests/perf: scan one source directory into a new SQLite
database, pack it to an output directory through the real handlers and `complete_job`, and
print peak RSS (MiB) before and after the pack as one JSON line.

    python -m tests.perf.pack_child SOURCE_DIR WORK_DIR
"""
from __future__ import annotations

import json
import os
import resource
import sys
import threading
import uuid

from loguru import logger

from dataprep.context import JobContext
from dataprep.handlers import HANDLERS
from storage import catalog
from storage.db import connect
from storage.jobs import claim_job, complete_job
from storage.schema import init_schema
from storage.workers import register_worker


def _peak_mib() -> float:
    """Peak RSS of this process image (VmHWM). Not getrusage's ru_maxrss, which survives
    exec and so would report the size of the test process that spawned this one."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _run(db, job_type: str) -> None:  # type: ignore[no-untyped-def]
    worker = register_worker(db)
    job = claim_job(db, worker, [job_type], max_attempts=3)
    assert job is not None, f"no {job_type} job"
    outcome = HANDLERS[job_type](job, JobContext(db=db, cancel=threading.Event(),
                                                 worker_id=worker))
    assert complete_job(db, job.id, worker, outcome.apply)


def main(source_dir: str, work_dir: str) -> int:
    logger.remove()
    db = connect(f"sqlite:///{os.path.join(work_dir, f'rss-{uuid.uuid4().hex[:6]}.db')}")
    init_schema(db)
    out = os.path.join(work_dir, "out")
    os.makedirs(out, exist_ok=True)
    catalog.create_storage(db, "src", source_dir)
    catalog.create_storage(db, "out", out)
    catalog.create_preparation(db, "rss", ["src"], ["out"])
    catalog.start_scan(db, "rss")
    _run(db, "scan")
    before = _peak_mib()
    _run(db, "pack")
    db.close()
    print(json.dumps({"before_pack_mib": before, "peak_mib": _peak_mib(),
                      "cars": sorted(os.listdir(out))}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
