"""The claimer: the one actor that changes job state for its process.

Workers tell it `ClaimJob`, and it answers `JobAssigned` or `NoJob` by `tell` (no actor
ever blocks on it). Workers report how each job ended (`JobFinished`, `JobFailed`,
`JobCancelledAck`, `JobRetry`) and it writes the end through `storage.jobs`, each write a
compare-and-set; a lost compare-and-set discards the job's output and lets go of the job.
It answers every report with `JobSettled`.

On its tick (every `watch_interval`) it also
- heartbeats every live worker id of the process, in one statement per `heartbeat_interval`;
- watches the jobs it handed out: one that is no longer `processing` (paused, resumed under
  us, rescued, deleted) is cancelled on its worker, well within 2 s of the change;
- writes throttled progress, and retries settlements that failed because the database was
  unreachable (the worker waits for them; nothing is lost).

During a database outage it answers claims with `NoJob(error=...)` so that workers back
off, and logs each distinct error at most once per 30 s. Its bookkeeping lives in the
process `Ledger`, so a restarted claimer carries on with the jobs its predecessor handed out.
"""
from __future__ import annotations

import datetime as dt
import time
import traceback
from typing import Any

import pykka

from actors.config import Config
from actors.failures import SupervisedActor, is_outage
from actors.ledger import Ledger
from actors.messages import (CancelJob, ClaimJob, JobAssigned, JobCancelledAck, JobFailed,
                             JobFinished, JobProgress, JobRetry, JobSettled, NewWork, NoJob,
                             Shutdown, Tick, WakeUp)
from actors.ratelog import RateLimitedLog
from actors.signals import PoolSignals, note
from actors.ticker import Ticker
from storage import jobs as job_store
from storage import workers as worker_store
from storage.db import Database

PROGRESS_EVERY = 1.0  # seconds between progress writes of one job


class Claimer(SupervisedActor):
    """Claims jobs for the workers of its process and writes how they end.

    Args:
        db: the process database.
        config: the whole config (worker, reaper sections).
        ledger: the process ledger (worker refs, handed-out jobs).
        types: the job types this process runs, in claim order.
        signals: test signals, or None.
    """

    def __init__(self, *, db: Database, config: Config, ledger: Ledger, types: tuple[str, ...],
                 signals: PoolSignals | None = None, hooks: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hooks = hooks
        self.db = db
        self.config = config
        self.ledger = ledger
        self.types = types
        self.signals = signals
        self.ratelog = RateLimitedLog()
        self.stopping = False
        self.ticker: Ticker | None = None
        self.pending: list[Any] = []                   # settlements to retry after an outage
        self.cancelled: dict[int, str] = {}            # job id → reason already sent
        self.progress: dict[int, tuple[str, int, int]] = {}  # latest unsent progress
        self.progress_written: dict[int, float] = {}
        self.next_heartbeat = 0.0

    # -- lifecycle (actor thread) ---------------------------------------------------------

    def start_actor(self) -> None:
        self.ledger.claimer_ref = self.actor_ref
        self.next_heartbeat = time.monotonic() + self.config.reaper.heartbeat_interval
        self.ticker = Ticker(self.actor_ref, self.config.worker.watch_interval, self.generation,
                             name=f"{self.name}-ticker").start()
        self.log.debug("claimer started (generation {})", self.generation)

    def stop_actor(self) -> None:
        if self.ticker is not None:
            self.ticker.stop()
        self.db.close()

    # -- messages -------------------------------------------------------------------------

    def handle(self, message: Any) -> None:
        if isinstance(message, ClaimJob):
            self.claim(message)
        elif isinstance(message, (JobFinished, JobFailed, JobCancelledAck, JobRetry)):
            self.settle(message)
        elif isinstance(message, JobProgress):
            self.progress[message.job_id] = (message.worker_id, message.done, message.total)
            self.flush_progress(only=message.job_id)
        elif isinstance(message, Tick):
            self.tick()
        elif isinstance(message, NewWork):
            self.wake_workers()
        elif isinstance(message, Shutdown):
            self.stopping = True

    def claim(self, msg: ClaimJob) -> None:
        ref = self.ledger.worker_ref(msg.worker_id)
        if ref is None:
            return  # the worker died or retired since it asked
        if self.stopping:
            self._tell(ref, NoJob(msg.request_id))
            return
        if self.hooks is not None:
            self.hooks.before_claim()  # tests inject claimer crashes here
        try:
            job = job_store.claim_job(self.db, msg.worker_id, self.types,
                                      max_attempts=self.config.worker.max_attempts,
                                      now=self.clock())
        except Exception as exc:  # noqa: BLE001 - any claim failure: the worker backs off
            self._db_error("claim", exc)
            self._tell(ref, NoJob(msg.request_id, error=f"{type(exc).__name__}: {exc}"))
            return
        self.ratelog.clear()
        if job is None:
            self._tell(ref, NoJob(msg.request_id))
            return
        self.ledger.hand_out(job.id, msg.worker_id, job.type, job.attempts)
        self.log.bind(worker_id=msg.worker_id, job_id=job.id).info(
            "claimed {} job {} (attempt {})", job.type, job.id, job.attempts)
        note(self.signals, "claimed", job_id=job.id, worker_id=msg.worker_id)
        if not self._tell(ref, JobAssigned(msg.request_id, job)):
            # The worker died between asking and our answer: give the job back at once.
            self.settle(JobCancelledAck(msg.worker_id, job.id, "shutdown"), reply=False)

    # -- settlements ------------------------------------------------------------------------

    def settle(self, msg: Any, *, reply: bool = True) -> None:
        """Write how a job ended; on an outage keep it for the next tick."""
        try:
            kind = self._write_end(msg)
        except Exception as exc:  # noqa: BLE001
            if is_outage(exc):
                self._db_error("settle", exc)
                if msg not in self.pending:
                    self.pending.append(msg)
                return
            raise
        self.ledger.settle(msg.job_id)
        self.cancelled.pop(msg.job_id, None)
        self.progress.pop(msg.job_id, None)
        self.progress_written.pop(msg.job_id, None)
        note(self.signals, "settled", job_id=msg.job_id, kind=kind, worker_id=msg.worker_id)
        if reply:
            ref = self.ledger.worker_ref(msg.worker_id)
            if ref is not None:
                self._tell(ref, JobSettled(msg.job_id, kind))
        if kind in ("released", "let_go", "retry") or (kind == "complete" and
                                                       self._job_type(msg) == "scan"):
            self.wake_workers()

    def _job_type(self, msg: Any) -> str:
        held = self.ledger.job(msg.job_id)
        return held.job_type if held else ""

    def _write_end(self, msg: Any) -> str:
        log = self.log.bind(worker_id=msg.worker_id, job_id=msg.job_id)
        now = self.clock()
        if isinstance(msg, JobFinished):
            return self._complete(msg, log, now)
        if isinstance(msg, JobFailed):
            if job_store.fail_job(self.db, msg.job_id, msg.worker_id, msg.message,
                                  msg.stack_trace, now=now):
                log.error("job {} failed: {}", msg.job_id, msg.message)
                return "error"
            return self._lost(msg, log)
        if isinstance(msg, JobRetry):
            held = self.ledger.job(msg.job_id)
            delay = self._retry_delay(held.attempts if held else 1)
            if job_store.retry_later(self.db, msg.job_id, msg.worker_id,
                                     now + dt.timedelta(seconds=delay), msg.message, now=now):
                log.warning("job {} will be retried in {:.1f}s: {}", msg.job_id, delay,
                            msg.message)
                return "retry"
            return self._lost(msg, log)
        assert isinstance(msg, JobCancelledAck)
        if msg.reason == "shutdown":
            if job_store.release_job(self.db, msg.job_id, msg.worker_id, now=now):
                log.info("job {} released", msg.job_id)
                return "released"
            return self._lost(msg, log)
        job_store.let_go(self.db, msg.job_id, msg.worker_id)
        log.info("let go of job {} ({})", msg.job_id, msg.reason)
        return "let_go"

    def _complete(self, msg: JobFinished, log: Any, now: dt.datetime) -> str:
        outcome = msg.outcome
        try:
            won = job_store.complete_job(self.db, msg.job_id, msg.worker_id, outcome.apply,
                                         now=now)
        except Exception as exc:
            if is_outage(exc):
                raise
            # `apply` (or a write it made) failed: nothing was committed. Fail the job.
            self._discard(outcome, log)
            trace = "".join(traceback.format_exception(exc))
            message = f"writing the results failed: {type(exc).__name__}: {exc}"
            if job_store.fail_job(self.db, msg.job_id, msg.worker_id, message, trace, now=now):
                log.error("job {} failed: {}", msg.job_id, message)
                return "error"
            return self._lost(msg, log)
        if not won:
            self._discard(outcome, log)
            return self._lost(msg, log)
        log.info("job {} complete{}", msg.job_id, f": {outcome.summary}" if outcome.summary else "")
        return "complete"

    def _lost(self, msg: Any, log: Any) -> str:
        """The job is no longer ours (paused, resumed, rescued, deleted): let go of it."""
        job_store.let_go(self.db, msg.job_id, msg.worker_id)
        log.warning("job {} was no longer ours; result discarded", msg.job_id)
        return "lost"

    def _discard(self, outcome: Any, log: Any) -> None:
        if outcome is None or outcome.discard is None:
            return
        try:
            outcome.discard()
        except Exception as exc:  # noqa: BLE001 - cleanup is best effort; log and go on
            log.warning("discarding a job's output failed: {}", exc)

    def _retry_delay(self, attempts: int) -> float:
        cfg = self.config.worker
        return min(cfg.max_interval, cfg.min_interval * (2 ** max(0, attempts - 1)))

    # -- the tick -------------------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + self.config.reaper.heartbeat_interval
            self.heartbeat()
        if self.pending:
            pending, self.pending = self.pending, []
            for msg in pending:
                self.settle(msg)
        self.watch()
        self.flush_progress()

    def heartbeat(self) -> None:
        ids = self.ledger.live_workers()
        if not ids:
            return
        try:
            worker_store.heartbeat_workers(self.db, ids, now=self.clock())
        except Exception as exc:  # noqa: BLE001 - a missed beat is only logged
            self._db_error("heartbeat", exc)
            return
        note(self.signals, "heartbeat", count=len(ids))

    def watch(self) -> None:
        """Cancel every handed-out job that is no longer `processing`."""
        held = self.ledger.handed_out()
        if not held:
            return
        try:
            states = job_store.job_states(self.db, [h.job_id for h in held])
        except Exception as exc:  # noqa: BLE001
            self._db_error("watch", exc)
            return
        for h in held:
            state = states.get(h.job_id)
            if state == "processing" or h.job_id in self.cancelled:
                continue
            reason = "paused" if state == "paused" else "lost"
            ref = self.ledger.worker_ref(h.worker_id)
            if ref is None:
                # Its worker died; the reaper rescued the job (or someone deleted it).
                self.ledger.settle(h.job_id)
                continue
            self.cancelled[h.job_id] = reason
            self.log.bind(worker_id=h.worker_id, job_id=h.job_id).info(
                "job {} is {}: cancelling it", h.job_id, state or "deleted")
            note(self.signals, "cancel_sent", job_id=h.job_id, reason=reason)
            self._tell(ref, CancelJob(h.job_id, reason))  # type: ignore[arg-type]

    def flush_progress(self, only: int | None = None) -> None:
        now = time.monotonic()
        for job_id in [only] if only is not None else list(self.progress):
            item = self.progress.get(job_id)
            if item is None:
                continue
            worker_id, done, total = item
            if done < total and now - self.progress_written.get(job_id, 0.0) < PROGRESS_EVERY:
                continue  # throttled; the final figure is always written
            try:
                job_store.update_progress(self.db, job_id, worker_id, done, total)
            except Exception as exc:  # noqa: BLE001 - progress is informative only
                self._db_error("progress", exc)
                return
            self.progress.pop(job_id, None)
            self.progress_written[job_id] = now

    def wake_workers(self) -> None:
        for ref in self.ledger.worker_refs():
            self._tell(ref, WakeUp())

    # -- helpers --------------------------------------------------------------------------

    def _tell(self, ref: Any, message: Any) -> bool:
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True

    def _db_error(self, what: str, exc: BaseException) -> None:
        if is_outage(exc):
            self.ratelog(self.log.bind(action=what), "WARNING",
                         f"database unavailable ({what}): {exc}")
        else:
            self.ratelog(self.log.bind(action=what), "ERROR",
                         f"{what} failed: {type(exc).__name__}: {exc}")


def claim_types(config: Config) -> tuple[str, ...]:
    """The enabled job types, in the claim order of SPEC §3: daggen, scan, pack."""
    w = config.worker
    return tuple(t for t, on in (("daggen", w.enable_dag), ("scan", w.enable_scan),
                                 ("pack", w.enable_pack)) if on)

