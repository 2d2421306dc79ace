"""The actor test harness: the real actor tree on a real database, with scripted handlers.

    config = test_config(db_url, concurrency=2)
    script = Script()
    script.on(job_id, raise_error("boom"))            # or: hang(), system_exit(), ...
    with PoolHarness(config, script, db=db) as pool:
        assert pool.wait_for(lambda: job_state(db, job_id) == "error", 10)
    assert pool.exit_code == 0

Handlers are scriptable per job id (a list of actions: one per run, the last repeats) with
a default for every other job; each run is recorded (`script.runs`) together with the
largest number of concurrent runs of one job seen, so tests can check "exactly once" and
"never on two workers at the same time". Intervals are short (`test_config`), and tests
wait with `wait_for(condition, timeout)`, never with a bare sleep.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from actors.config import (Config, DatabaseConfig, ReaperConfig, SupervisorConfig,
                           WorkerConfig)
from actors.pool import run_pool
from actors.signals import PoolSignals
from dataprep.context import JobContext, JobOutcome
from dataprep.errors import JobCancelled, TransientError
from storage.db import Database
from storage.rows import JobRow

Action = Callable[[JobRow, JobContext], JobOutcome]

FAST_WORKER = dict(min_interval=0.05, max_interval=0.4, watch_interval=0.1, max_attempts=3)
FAST_REAPER = dict(interval=0.3, stale_after=1.0, heartbeat_interval=0.2, lease_ttl=2.0,
                   batch_time_budget=1.0)
FAST_SUPERVISOR = dict(max_restarts=5, restart_window=60.0, shutdown_timeout=5.0)


def test_config(db_url: str, **overrides: Any) -> Config:
    """A Config with short intervals; `overrides` name fields of any section."""
    sections: dict[str, dict[str, Any]] = {"worker": dict(FAST_WORKER),
                                           "reaper": dict(FAST_REAPER),
                                           "supervisor": dict(FAST_SUPERVISOR)}
    classes = {"worker": WorkerConfig, "reaper": ReaperConfig, "supervisor": SupervisorConfig}
    for key, value in overrides.items():
        for name, cls in classes.items():
            if key in {f.name for f in dataclasses.fields(cls)}:
                sections[name][key] = value
                break
        else:
            raise TypeError(f"unknown setting {key!r}")
    return Config(database=DatabaseConfig(url=db_url),
                  worker=WorkerConfig(**sections["worker"]),
                  reaper=ReaperConfig(**sections["reaper"]),
                  supervisor=SupervisorConfig(**sections["supervisor"]))


test_config.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


# -- actions ----------------------------------------------------------------------------------

def succeed(summary: str = "") -> Action:
    def action(job: JobRow, ctx: JobContext) -> JobOutcome:
        return JobOutcome(summary=summary)
    return action


def raise_error(message: str = "scripted failure") -> Action:
    def action(job: JobRow, ctx: JobContext) -> JobOutcome:
        raise RuntimeError(message)
    return action


def raise_base(exc_type: type[BaseException], *args: Any) -> Action:
    """Raise a BaseException such as SystemExit or KeyboardInterrupt."""
    def action(job: JobRow, ctx: JobContext) -> JobOutcome:
        raise exc_type(*args)
    return action


def system_exit(code: int = 3) -> Action:
    return raise_base(SystemExit, code)


def keyboard_interrupt() -> Action:
    return raise_base(KeyboardInterrupt)


def transient(message: str = "briefly unavailable") -> Action:
    def action(job: JobRow, ctx: JobContext) -> JobOutcome:
        raise TransientError(message)
    return action


def hang(timeout: float = 60.0, on_start: Callable[[JobRow], None] | None = None) -> Action:
    """Block until cancelled, then raise JobCancelled (as the data path does)."""
    def action(job: JobRow, ctx: JobContext) -> JobOutcome:
        if on_start is not None:
            on_start(job)
        if ctx.cancel.wait(timeout):
            raise JobCancelled(f"job {job.id} cancelled")
        raise RuntimeError(f"job {job.id} was never cancelled")
    return action


def report_progress(steps: int = 5, total: int = 1000) -> Action:
    def action(job: JobRow, ctx: JobContext) -> JobOutcome:
        for i in range(1, steps + 1):
            if ctx.cancel.is_set():
                raise JobCancelled()
            ctx.progress(total * i // steps, total)
        return JobOutcome(summary=f"{total} bytes")
    return action


def kill_self() -> Action:
    """SIGKILL the whole process (subprocess tests only)."""
    def action(job: JobRow, ctx: JobContext) -> JobOutcome:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")
    return action


# -- the script ---------------------------------------------------------------------------------

@dataclass
class Run:
    job_id: int
    worker_id: str
    started: float
    ended: float | None = None
    result: str = ""


@dataclass
class Script:
    """Scripted handlers: per-job action lists, a default, and a record of every run."""

    default: Action = field(default_factory=succeed)
    actions: dict[int, list[Action]] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    active: dict[int, int] = field(default_factory=dict)
    max_active: dict[int, int] = field(default_factory=dict)
    attachments_seen: dict[int, bool] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, job_id: int, *actions: Action) -> Script:
        """Run `actions` on the job's successive runs (the last one repeats)."""
        self.actions[job_id] = list(actions)
        return self

    def handlers(self) -> dict[str, Callable[[JobRow, JobContext], JobOutcome]]:
        return {t: self.handle for t in ("scan", "pack", "daggen")}

    def handle(self, job: JobRow, ctx: JobContext) -> JobOutcome:
        with self._lock:
            queue = self.actions.get(job.id)
            action = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else self.default
            run = Run(job.id, ctx.worker_id, time.monotonic())
            self.runs.append(run)
            self.active[job.id] = self.active.get(job.id, 0) + 1
            self.max_active[job.id] = max(self.max_active.get(job.id, 0), self.active[job.id])
            self.attachments_seen[job.id] = job.attachment is not None
        try:
            outcome = action(job, ctx)
            run.result = "ok"
            return outcome
        except BaseException as exc:
            run.result = type(exc).__name__
            raise
        finally:
            with self._lock:
                self.active[job.id] -= 1
                run.ended = time.monotonic()

    def run_count(self, job_id: int) -> int:
        with self._lock:
            return sum(1 for r in self.runs if r.job_id == job_id)

    def finished_runs(self, job_id: int) -> list[Run]:
        with self._lock:
            return [r for r in self.runs if r.job_id == job_id and r.ended is not None]


@dataclass
class Faults:
    """Fault injection into the worker actor's own code (not the handler)."""

    crash_jobs: set[int] = field(default_factory=set)  # crash the worker when assigned these
    crash_every: bool = False                          # ... or every job
    crash_claimer: int = 0                             # crash the claimer on this many claims
    fail_start: set[str] = field(default_factory=set)  # fail these workers' first on_start
    crashes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_start(self, name: str, generation: int) -> None:
        with self._lock:
            hit = name in self.fail_start
            self.fail_start.discard(name)
        if hit:
            raise RuntimeError(f"injected start failure of {name}")

    def before_claim(self) -> None:
        with self._lock:
            hit = self.crash_claimer > 0
            if hit:
                self.crash_claimer -= 1
        if hit:
            raise RuntimeError("injected claimer crash")

    def on_assigned(self, name: str, job: JobRow) -> None:
        with self._lock:
            hit = self.crash_every or job.id in self.crash_jobs
            if hit:
                self.crash_jobs.discard(job.id)
                self.crashes += 1
        if hit:
            raise RuntimeError(f"injected crash of {name} on job {job.id}")


# -- the pool under test -------------------------------------------------------------------------

class PoolHarness:
    """`run_pool` on a background thread, with signals to wait on and a way to stop it."""

    def __init__(self, config: Config, script: Script | None = None, *, db: Database,
                 faults: Faults | None = None, handlers: dict | None = None) -> None:
        self.config = config
        self.db = db
        self.script = script or Script()
        self.faults = faults
        self.handlers = handlers if handlers is not None else self.script.handlers()
        self.signals = PoolSignals()
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pool-main", daemon=True)

    def _run(self) -> None:
        try:
            self.exit_code = run_pool(self.config, handlers=self.handlers, signals=self.signals,
                                      install_signal_handlers=False, hooks=self.faults,
                                      sweep_interval=0.05, db=self.db)
        except BaseException as exc:  # noqa: BLE001 - surfaced by stop()/join()
            self.error = exc

    def start(self) -> PoolHarness:
        self._thread.start()
        if not self.signals.wait_for(lambda: self.signals.count("started") > 0
                                     or not self._thread.is_alive(), 10):
            raise TimeoutError("the pool did not start")
        if self.error is not None:
            raise self.error
        return self

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> bool:
        return self.signals.wait_for(condition, timeout)

    def join(self, timeout: float = 15.0) -> int | None:
        """Wait for the pool to end by itself; its exit code (None: still running)."""
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.exit_code

    def stop(self, timeout: float = 15.0) -> int | None:
        self.signals.request_stop()
        return self.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> PoolHarness:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.running:
            self.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll `condition` until it holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
