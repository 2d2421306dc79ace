"""Messages between the actors of one process.

Every message is a frozen, slotted dataclass carrying ids and plain values. Requests are
imperatives (`ClaimJob`, `CancelJob`), facts are in the past tense (`JobFinished`,
`ActorDied`). Replies travel back as `tell`s; nothing here is ever awaited upward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from dataprep.context import JobOutcome
    from storage.rows import JobRow

CancelReason = Literal["paused", "lost", "shutdown"]
"""Why a running job is cancelled: a user paused it; the job changed or vanished under us
(resumed, deleted, rescued); or the process is stopping."""


@dataclass(frozen=True, slots=True)
class Tick:
    """A timer beat; `generation` names the life of the actor it was started for."""

    generation: int


# -- worker → claimer -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ClaimJob:
    """Find a job for `worker_id`; the claimer answers `JobAssigned` or `NoJob`."""

    worker_id: str
    request_id: int


@dataclass(frozen=True, slots=True)
class JobFinished:
    """A handler returned normally: complete the job, applying `outcome` in the same tx."""

    worker_id: str
    job_id: int
    outcome: JobOutcome


@dataclass(frozen=True, slots=True)
class JobFailed:
    """A handler raised (anything, BaseException included) or the dispatch guard refused."""

    worker_id: str
    job_id: int
    message: str
    stack_trace: str


@dataclass(frozen=True, slots=True)
class JobCancelledAck:
    """A handler stopped after a cancel: release the job (shutdown) or let go of it."""

    worker_id: str
    job_id: int
    reason: CancelReason


@dataclass(frozen=True, slots=True)
class JobRetry:
    """A handler raised `TransientError`: put the job back with a not-before time."""

    worker_id: str
    job_id: int
    message: str


@dataclass(frozen=True, slots=True)
class JobProgress:
    """Bytes done so far; the claimer throttles the writes."""

    worker_id: str
    job_id: int
    done: int
    total: int


# -- claimer → worker -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class JobAssigned:
    """The answer to `ClaimJob` request `request_id`: run `job`."""

    request_id: int
    job: JobRow


@dataclass(frozen=True, slots=True)
class NoJob:
    """The answer to `ClaimJob`: nothing to do (`error` set when the claim itself failed)."""

    request_id: int
    error: str = ""


@dataclass(frozen=True, slots=True)
class JobSettled:
    """The claimer wrote the end of `job_id`; `kind` says what became of it."""

    job_id: int
    kind: Literal["complete", "error", "released", "retry", "let_go", "lost"]


@dataclass(frozen=True, slots=True)
class CancelJob:
    """Stop running `job_id` (set its cancel event)."""

    job_id: int
    reason: CancelReason


@dataclass(frozen=True, slots=True)
class WakeUp:
    """New work may be ready: an idle worker claims at once instead of sleeping on."""


@dataclass(frozen=True, slots=True)
class ClaimerRestarted:
    """The claimer was restarted: send again what the old one may have lost."""


# -- worker internal (job thread → its own actor) ---------------------------------------------

@dataclass(frozen=True, slots=True)
class HandlerReturned:
    """The job thread ended; `result` is a JobOutcome or the exception it raised."""

    job_id: int
    result: Any
    stack_trace: str = ""


# -- supervision ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ActorDied:
    """A child failed (from its `on_failure` or a failed `on_start`)."""

    name: str
    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class WorkerStopped:
    """A worker ended normally (exit-on-complete): do not restart it."""

    name: str
    generation: int


@dataclass(frozen=True, slots=True)
class WorkerErrored:
    """A job failed while `exit_on_error` is set: the process stops and exits 1."""

    name: str
    job_id: int


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Stop gracefully: cancel running jobs (they are released), stop claiming."""


@dataclass(frozen=True, slots=True)
class StopPool:
    """To the supervisor: stop gracefully, then end the pool with `exit_code`."""

    exit_code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class NewWork:
    """Jobs were created in this process (a scan completed): wake idle workers."""
