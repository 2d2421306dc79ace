"""What a job handler receives and returns: the contract between actors and the data path."""
from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Callable

from storage.db import Database
from storage.models import utcnow
from storage.rows import JobRow


def _no_progress(done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class JobContext:
    """Handed to a handler on its job thread.

    Attributes:
        db: the database (peewee opens this thread's own connection on first use).
        cancel: set when the job must stop (pause, shutdown); check it between blocks and
            raise `dataprep.errors.JobCancelled`.
        progress: `progress(done_bytes, total_bytes)`; cheap, may be called often.
        worker_id: the worker that claimed the job.
        clock: the time source (naive UTC).
    """

    db: Database
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: Callable[[int, int], None] = _no_progress
    worker_id: str = ""
    clock: Callable[[], dt.datetime] = utcnow


@dataclass
class JobOutcome:
    """What a successful handler returns.

    Attributes:
        apply: writes the job's result rows. It runs inside the transaction of
            `storage.jobs.complete_job`, after the compare-and-set has won, on the thread
            that completes the job, so the rows become visible with the completion or not
            at all (DESIGN invariant 3). None: nothing to write.
        discard: undoes what the job did outside the database (output files) when the
            compare-and-set is lost or `apply` fails. None: nothing to undo.
        summary: one line for the log.
    """

    apply: Callable[[], None] | None = None
    discard: Callable[[], None] | None = None
    summary: str = ""


Handler = Callable[[JobRow, JobContext], JobOutcome]
