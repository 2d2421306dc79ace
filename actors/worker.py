"""The worker: claims a job, runs its handler on a job thread, reports how it ended.

States: registering → idle ⇄ claiming → running → settling → idle …; `stopped` at the end.

- Registration is retried with backoff, so a worker started during a database outage
  waits instead of dying (a death would spend the restart budget).
- The handler runs on a daemon job thread; the actor stays free for `CancelJob`,
  `Shutdown` and ticks. Every exception of the handler, `BaseException` included
  (`SystemExit`, `KeyboardInterrupt`, `MemoryError`), becomes a job failure with its
  message and traceback; `JobCancelled` after a cancel becomes a release (shutdown) or a
  let-go (pause, or the job changed under us); `TransientError` becomes a retry later.
- The dispatch guard fails a job without an attachment without running it.
- Idle or after an error it sleeps `min_interval`, doubling to `max_interval`; a success
  or a pause resets the interval. `WakeUp` from the claimer cuts an idle sleep short.
- Requests to the claimer are `tell`s answered by `tell`s; a request that got no answer
  within `REPLY_TIMEOUT` (the claimer restarted) is sent again, and an answer to an old
  request is given back.
"""
from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Mapping

import pykka

from actors.config import Config
from actors.failures import SupervisedActor
from actors.ledger import Ledger
from actors.messages import (CancelJob, ClaimerRestarted, ClaimJob, HandlerReturned, JobAssigned,
                             JobCancelledAck, JobFailed, JobFinished, JobProgress, JobRetry,
                             JobSettled, NoJob, Shutdown, Tick, WakeUp, WorkerErrored,
                             WorkerStopped)
from actors.ratelog import RateLimitedLog
from actors.signals import PoolSignals, note
from actors.ticker import Ticker
from dataprep.context import Handler, JobContext, JobOutcome
from dataprep.errors import DataprepError, JobCancelled, TransientError
from storage import workers as worker_store
from storage.db import Database
from storage.rows import JobRow

REPLY_TIMEOUT = 30.0     # seconds to wait for the claimer before asking again
PROGRESS_EVERY = 0.5     # seconds between progress messages of one job


class Backoff:
    """Sleep first, then double: min, 2·min, 4·min … capped at max (SPEC §4.3, PR #672)."""

    def __init__(self, min_interval: float, max_interval: float) -> None:
        self.min = min_interval if min_interval > 0 else 5.0
        self.max = max(self.min, max_interval if max_interval > 0 else 160.0)
        self.current = self.min

    def next_sleep(self) -> float:
        sleep = self.current
        self.current = min(self.current * 2, self.max)
        return sleep

    def reset(self) -> None:
        self.current = self.min


def failure_message(exc: BaseException) -> str:
    """The job's error message: a data-path error's own text, else the type and text."""
    if isinstance(exc, DataprepError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Worker(SupervisedActor):
    """One worker of the pool (N per process, transient children of the supervisor)."""

    def __init__(self, *, db: Database, config: Config, ledger: Ledger,
                 handlers: Mapping[str, Handler], signals: PoolSignals | None = None,
                 hooks: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.db = db
        self.cfg = config.worker
        self.ledger = ledger
        self.handlers = handlers
        self.signals = signals
        self.hooks = hooks
        self.ratelog = RateLimitedLog()
        self.backoff = Backoff(self.cfg.min_interval, self.cfg.max_interval)
        self.state = "registering"
        self.worker_id = ""
        self.wake_at = 0.0
        self.deadline = 0.0
        self.request_id = 0
        self.job: JobRow | None = None
        self.cancel: threading.Event | None = None
        self.cancel_reason = ""
        self.settlement: Any = None
        self.stopping = False
        self.ticker: Ticker | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start_actor(self) -> None:
        if self.hooks is not None:
            self.hooks.on_start(self.name, self.generation)  # tests inject start failures
        tick = min(max(self.cfg.min_interval / 2, 0.01), 0.5)
        self.ticker = Ticker(self.actor_ref, tick, self.generation, immediate=True,
                             name=f"{self.name}-ticker").start()

    def stop_actor(self) -> None:
        if self.ticker is not None:
            self.ticker.stop()

    def crashed(self) -> None:
        # The job (if any) stays under our old id; heartbeats stop, so the reaper rescues it.
        if self.cancel is not None:
            self.cancel_reason = "lost"
            self.cancel.set()
        if self.worker_id:
            self.ledger.retire_worker(self.worker_id)
        self.stop_actor()

    # -- messages -----------------------------------------------------------------------

    def handle(self, message: Any) -> None:
        if isinstance(message, Tick):
            self.on_tick()
        elif isinstance(message, JobAssigned):
            self.on_assigned(message)
        elif isinstance(message, NoJob):
            self.on_no_job(message)
        elif isinstance(message, HandlerReturned):
            self.on_returned(message)
        elif isinstance(message, JobSettled):
            self.on_settled(message)
        elif isinstance(message, CancelJob):
            self.on_cancel(message)
        elif isinstance(message, WakeUp):
            if self.state == "idle" and not self.stopping:
                self.request_claim()
        elif isinstance(message, Shutdown):
            self.on_shutdown()
        elif isinstance(message, ClaimerRestarted):
            if self.state == "claiming":
                self.request_claim()
            elif self.state == "settling":
                self.send_settlement()

    def on_tick(self) -> None:
        now = time.monotonic()
        if self.state == "registering" and now >= self.wake_at:
            self.register()
        elif self.state == "idle" and now >= self.wake_at:
            self.request_claim()
        elif self.state == "claiming" and now >= self.deadline:
            self.request_claim()
        elif self.state == "settling" and now >= self.deadline:
            self.send_settlement()

    def register(self) -> None:
        if self.stopping:
            self.finish()
            return
        try:
            worker_id = worker_store.register_worker(self.db, hostname=self.ledger.hostname,
                                                     pid=self.ledger.pid, now=self.clock())
        except Exception as exc:  # noqa: BLE001 - the database may be down; try again later
            self.sleep(f"cannot register: {type(exc).__name__}: {exc}")
            return
        self.worker_id = worker_id
        self.log = self.log.bind(worker_id=worker_id)
        self.ledger.add_worker(worker_id, self.actor_ref, self.name)
        self.log.debug("worker {} registered", worker_id)
        note(self.signals, "registered", name=self.name, worker_id=worker_id)
        self.state = "idle"
        self.request_claim()

    def request_claim(self) -> None:
        claimer = self.ledger.claimer_ref
        self.request_id += 1
        try:
            if claimer is None:
                raise pykka.ActorDeadError("no claimer")
            claimer.tell(ClaimJob(self.worker_id, self.request_id))
        except pykka.ActorDeadError:
            self.state = "idle"
            self.sleep("the claimer is not running")
            return
        self.state = "claiming"
        self.deadline = time.monotonic() + REPLY_TIMEOUT

    def on_no_job(self, msg: NoJob) -> None:
        if self.state != "claiming" or msg.request_id != self.request_id:
            return
        self.state = "idle"
        if self.stopping:
            self.finish()
        elif msg.error:
            self.sleep(msg.error)
        elif self.cfg.exit_on_complete:
            self.log.info("no work left: worker stops (exit-on-complete)")
            self.finish(deregister=True)
            self.supervisor.tell(WorkerStopped(self.name, self.generation))
        else:
            self.sleep()

    def on_assigned(self, msg: JobAssigned) -> None:
        job = msg.job
        if self.state != "claiming" or msg.request_id != self.request_id or self.stopping:
            # An answer to a request we gave up on, or we are stopping: give the job back.
            self.tell_claimer(JobCancelledAck(self.worker_id, job.id, "shutdown"))
            if self.stopping and self.state == "claiming" and msg.request_id == self.request_id:
                self.finish()
            return
        self.job = job
        self.cancel = threading.Event()
        self.cancel_reason = ""
        log = self.log.bind(job_id=job.id)
        if self.hooks is not None:
            self.hooks.on_assigned(self.name, job)  # tests inject actor crashes here
        if job.attachment is None:
            self.report(JobFailed(self.worker_id, job.id,
                                  f"job {job.id} has no attachment (orphaned by preparation "
                                  "deletion)", ""))
            return
        handler = self.handlers.get(job.type)
        if handler is None:
            self.report(JobFailed(self.worker_id, job.id,
                                  f"no handler for job type {job.type!r}", ""))
            return
        ctx = JobContext(db=self.db, cancel=self.cancel, progress=self.progress_callback(job.id),
                         worker_id=self.worker_id, clock=self.clock)
        thread = threading.Thread(target=run_handler,
                                  args=(self.actor_ref, handler, job, ctx, self.db),
                                  name=f"{self.name}-job-{job.id}", daemon=True)
        self.state = "running"
        log.debug("running {} job {}", job.type, job.id)
        note(self.signals, "job_started", job_id=job.id, worker_id=self.worker_id)
        thread.start()

    def progress_callback(self, job_id: int) -> Any:
        last = [0.0]
        worker_id = self.worker_id
        ledger = self.ledger

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] < PROGRESS_EVERY and done < total:
                return
            last[0] = now
            claimer = ledger.claimer_ref
            if claimer is not None:
                try:
                    claimer.tell(JobProgress(worker_id, job_id, done, total))
                except pykka.ActorDeadError:
                    pass

        return progress

    def on_returned(self, msg: HandlerReturned) -> None:
        if self.state != "running" or self.job is None or msg.job_id != self.job.id:
            return
        result = msg.result
        wid, job_id = self.worker_id, msg.job_id
        note(self.signals, "job_returned", job_id=job_id, worker_id=wid,
             result=type(result).__name__)
        if result is None or isinstance(result, JobOutcome):
            self.report(JobFinished(wid, job_id, result or JobOutcome()))
        elif isinstance(result, JobCancelled) and self.cancel is not None \
                and self.cancel.is_set():
            reason = self.cancel_reason or "shutdown"
            self.report(JobCancelledAck(wid, job_id, reason))  # type: ignore[arg-type]
        elif isinstance(result, TransientError):
            self.report(JobRetry(wid, job_id, failure_message(result)))
        elif isinstance(result, BaseException):
            self.report(JobFailed(wid, job_id, failure_message(result), msg.stack_trace))
        else:
            self.report(JobFailed(wid, job_id, f"handler returned {type(result).__name__}, "
                                               "not a JobOutcome", ""))

    def report(self, settlement: Any) -> None:
        self.state = "settling"
        self.settlement = settlement
        self.send_settlement()

    def send_settlement(self) -> None:
        self.deadline = time.monotonic() + REPLY_TIMEOUT
        if not self.tell_claimer(self.settlement):
            self.deadline = time.monotonic() + self.backoff.min  # try again soon

    def on_settled(self, msg: JobSettled) -> None:
        if self.state != "settling" or self.job is None or msg.job_id != self.job.id:
            return
        self.job, self.cancel, self.settlement = None, None, None
        self.state = "idle"
        if self.stopping:
            self.finish()
            return
        if msg.kind == "error" and self.cfg.exit_on_error:
            self.supervisor.tell(WorkerErrored(self.name, msg.job_id))
        if msg.kind in ("complete", "let_go", "lost"):
            self.backoff.reset()
            self.request_claim()
        else:
            self.sleep()

    def on_cancel(self, msg: CancelJob) -> None:
        if self.state != "running" or self.job is None or msg.job_id != self.job.id:
            return
        note(self.signals, "cancel_received", job_id=msg.job_id, reason=msg.reason)
        self.log.bind(job_id=msg.job_id).info("cancelling job {} ({})", msg.job_id, msg.reason)
        self.cancel_reason = msg.reason
        assert self.cancel is not None
        self.cancel.set()

    def on_shutdown(self) -> None:
        self.stopping = True
        if self.state == "running":
            self.cancel_reason = "shutdown"
            assert self.cancel is not None
            self.cancel.set()
        elif self.state in ("idle", "registering"):
            self.finish()
        # claiming: the answer finishes us; settling: the settlement does.

    # -- helpers ------------------------------------------------------------------------

    def sleep(self, error: str = "") -> None:
        """Back off before the next attempt (idle, or after an error)."""
        seconds = self.backoff.next_sleep()
        self.wake_at = time.monotonic() + seconds
        if error:
            self.ratelog(self.log, "WARNING", f"worker backs off: {error}")
        note(self.signals, "backoff", name=self.name, seconds=seconds, error=error)

    def tell_claimer(self, message: Any) -> bool:
        claimer = self.ledger.claimer_ref
        if claimer is None:
            return False
        try:
            claimer.tell(message)
        except pykka.ActorDeadError:
            return False
        return True

    def finish(self, *, deregister: bool = False) -> None:
        """Stop this worker for good (shutdown, or no work left with exit-on-complete)."""
        self.state = "stopped"
        self.ledger.mark_finished(self.name, self.generation)
        if self.worker_id:
            self.ledger.retire_worker(self.worker_id)
            if deregister:
                try:
                    worker_store.deregister_worker(self.db, self.worker_id)
                    self.ledger.forget_registration(self.worker_id)
                except Exception as exc:  # noqa: BLE001 - the pool's cleanup tries again
                    self.log.warning("deregistering failed: {}", exc)
        note(self.signals, "worker_stopped", name=self.name, worker_id=self.worker_id)
        self.stop_actor()
        self.stop()


def run_handler(ref: pykka.ActorRef[Any], handler: Handler, job: JobRow, ctx: JobContext,
                db: Database) -> None:
    """The job thread: run the handler and tell the worker what came of it."""
    stack = ""
    try:
        result: Any = handler(job, ctx)
    except BaseException as exc:  # noqa: BLE001 - SystemExit & co must not escape (DESIGN rule 4)
        result = exc
        stack = traceback.format_exc()
    finally:
        try:
            db.close()  # this thread's own connection
        except Exception:  # noqa: BLE001
            pass
    try:
        ref.tell(HandlerReturned(job.id, result, stack))
    except pykka.ActorDeadError:
        pass  # the worker died meanwhile; the reaper rescues the job
