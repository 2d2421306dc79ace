"""Running the worker pool of one process: `run_pool(config) -> exit code`.

The main thread builds the actor tree (a `Supervisor` and its children), then waits for
the supervisor to report an exit code, watching for signals meanwhile:

- SIGINT / SIGTERM: a graceful stop. Running jobs are cancelled and released to `ready`,
  and the worker rows deleted, within `shutdown_timeout`. Exit code 130 / 143.
- a second SIGINT / SIGTERM: exit at once (the same code), without cleanup; the reaper of
  any process later rescues what was left.
- SIGUSR1: log every thread's stack (for debugging a stuck pool).

After the supervisor has finished, the main thread releases every job the process still
holds (workers that did not stop in time, or crashed) and deletes every worker row it
registered. Exit codes: 0 normal (exit-on-complete, or a stop requested through test
signals), 1 escalation or exit-on-error, 130 / 143 a signal stop.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import threading
import time
import traceback
from types import FrameType
from typing import Any, Callable, Mapping

from loguru import logger

from actors import registry
from actors.config import Config
from actors.failures import is_outage
from actors.localrescue import rescue_dead_local_workers
from actors.ledger import Ledger
from actors.messages import StopPool
from actors.reaper import make_config_check
from actors.signals import PoolSignals, note
from actors.supervisor import Supervisor
from dataprep.context import Handler
from storage import jobs as job_store
from storage import workers as worker_store
from storage.db import Database, connect
from storage.models import utcnow

EXIT_OK, EXIT_FAILURE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 130, 143
_POLL = 0.05  # seconds between the main thread's checks (signals need it awake)
STOP_WAIT = 2.0  # seconds to let the actors finish their last message before cleanup


def dump_stacks(signum: int | None = None, frame: FrameType | None = None) -> None:
    """Log the stack of every thread (the SIGUSR1 handler)."""
    frames = sys._current_frames()
    for thread in threading.enumerate():
        stack = frames.get(thread.ident or -1)
        text = "".join(traceback.format_stack(stack)) if stack is not None else "(no frame)\n"
        logger.warning("thread {} (daemon={}):\n{}", thread.name, thread.daemon, text)


class _SignalState:
    """What the signal handlers saw; read by the main loop (handlers only set fields)."""

    def __init__(self) -> None:
        self.code: int | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
        if self.code is not None:
            # Second signal: stop now. Nothing is cleaned up; the reaper rescues the rest.
            sys.stderr.write(f"second signal {signum}: exiting at once\n")
            sys.stderr.flush()
            os._exit(self.code)
        self.code = code


def run_pool(config: Config, *, handlers: Mapping[str, Handler] | None = None,
             signals: PoolSignals | None = None, install_signal_handlers: bool = True,
             hooks: Any = None, clock: Callable[[], dt.datetime] = utcnow,
             sweep_interval: float | None = None, db: Database | None = None) -> int:
    """Run the pool until it stops; return the process exit code.

    Args:
        config: the settings (`database.url`, `[worker]`, `[reaper]`, `[supervisor]`).
        handlers: job type → handler; default: the registry's (the data path's).
        signals: test signals (also lets a test request a stop), or None.
        install_signal_handlers: handle SIGINT/SIGTERM/SIGUSR1 (main thread only).
        hooks: fault injection for tests (`on_assigned(name, job)`), or None.
        clock: the time source (naive UTC).
        sweep_interval: seconds between the supervisor's liveness sweeps.
        db: an open database to use instead of connecting to `config.database.url`.
            The models are bound to one database object per process, so a test that
            already holds one must pass it in.

    Raises:
        storage.errors.StorageError: the database cannot be opened at start.
    """
    table = registry.resolve(handlers)
    make_config_check(config)
    if db is None:
        db = connect(config.database.url)
    ledger = Ledger()
    done = threading.Event()
    result: dict[str, Any] = {"code": EXIT_OK, "children": []}

    def on_done(code: int, children: list[Any]) -> None:
        result["code"] = code
        result["children"] = children
        done.set()

    state = _SignalState()
    previous = _install(state) if install_signal_handlers else {}
    kwargs: dict[str, Any] = {} if sweep_interval is None else {"sweep_interval": sweep_interval}
    logger.info("worker pool starting: {} worker(s) on {}", config.worker.concurrency, db.url)
    rescue_dead_local_workers(db)  # a killed earlier run's jobs, now rather than when stale
    try:
        supervisor = Supervisor.start(db=db, config=config, ledger=ledger, handlers=table,
                                      on_done=on_done, clock=clock, signals=signals,
                                      hooks=hooks, **kwargs)
        if signals is not None:
            signals.supervisor_ref = supervisor
        asked = False
        while not done.wait(_POLL):
            if not asked and (state.code is not None
                              or (signals is not None and signals.stop_requested.is_set())):
                asked = True
                why = "signal" if state.code is not None else "stop requested"
                supervisor.tell(StopPool(state.code or EXIT_OK, why))
            if not supervisor.is_alive() and not done.is_set():
                logger.error("the supervisor died without a result")
                result["code"] = EXIT_FAILURE
                break
        _await_stopped(result["children"] + [supervisor], STOP_WAIT)
        _bounded(cleanup, (db, ledger, config.supervisor.shutdown_timeout),
                 config.supervisor.shutdown_timeout)
    finally:
        _restore(previous)
        db.close()
    code = state.code if state.code is not None else result["code"]
    note(signals, "pool_exit", exit_code=code)
    logger.info("worker pool stopped (exit code {})", code)
    return code


def cleanup(db: Database, ledger: Ledger, budget: float) -> None:
    """Release the jobs the process still holds and delete its worker rows.

    Stops at the first database outage (a shutdown must not hang on a dead database;
    the reaper of a later run rescues what is left), and after `budget` seconds.
    """
    deadline = time.monotonic() + budget
    try:
        for held in ledger.handed_out():
            if time.monotonic() > deadline:
                return
            if job_store.release_job(db, held.job_id, held.worker_id):
                logger.bind(job_id=held.job_id, worker_id=held.worker_id).info(
                    "released job {} at shutdown", held.job_id)
            ledger.settle(held.job_id)
        for worker_id in ledger.registered_workers():
            if time.monotonic() > deadline:
                return
            worker_store.deregister_worker(db, worker_id)
            ledger.forget_registration(worker_id)
    except Exception as exc:  # noqa: BLE001
        level = "WARNING" if is_outage(exc) else "ERROR"
        logger.log(level, "cleanup at shutdown incomplete: {}", exc)


def _bounded(fn: Callable[..., None], args: tuple, budget: float) -> None:
    """Run `fn` on a daemon thread and wait at most `budget` seconds for it.

    A database call can block far longer than a shutdown may take (SQLite's busy timeout
    times the retries); the process then exits without it, and the reaper rescues the rest.
    """
    thread = threading.Thread(target=fn, args=args, name="pool-cleanup", daemon=True)
    thread.start()
    thread.join(budget)
    if thread.is_alive():
        logger.warning("cleanup did not finish within {}s; the reaper will rescue what is left",
                       budget)


def _await_stopped(refs: list[Any], budget: float) -> None:
    """Wait (bounded) until the actors have stopped, so cleanup does not race them."""
    deadline = time.monotonic() + budget
    for ref in refs:
        ref.actor_stopped.wait(max(0.0, deadline - time.monotonic()))


def _install(state: _SignalState) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, state.handle)
    if hasattr(signal, "SIGUSR1"):
        previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, dump_stacks)
    return previous


def _restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
