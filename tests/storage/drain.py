"""Drain the job queue from one process with N threads: claim, then complete, until empty.

Run as `python -m tests.storage.drain URL THREADS OUT` (the exclusive-claim test starts two
of these). Each thread registers a worker and writes one line per job it claimed to OUT:
`<job_id> <completed: 1|0>`. Exits 0 when the queue is empty.
"""
from __future__ import annotations

import sys
import threading

from storage.db import connect
from storage.jobs import claim_job, complete_job
from storage.workers import deregister_worker, register_worker


def drain(url: str, threads: int, out_path: str, *, max_empty: int = 3) -> None:
    """Claim and complete jobs on `threads` threads until each sees the queue empty."""
    db = connect(url)
    lines: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker_id = register_worker(db)
            empty = 0
            mine: list[str] = []
            while empty < max_empty:
                job = claim_job(db, worker_id, max_attempts=5)
                if job is None:
                    empty += 1
                    continue
                empty = 0
                mine.append(f"{job.id} {int(complete_job(db, job.id, worker_id))}")
            deregister_worker(db, worker_id)
            with lock:
                lines.extend(mine)
        except BaseException as exc:  # noqa: BLE001 - reported by the parent
            errors.append(exc)
        finally:
            db.close()

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    with open(out_path, "w") as fh:
        fh.write("\n".join(lines) + ("\n" if lines else ""))
    if errors:
        raise errors[0]


if __name__ == "__main__":
    drain(sys.argv[1], int(sys.argv[2]), sys.argv[3])
