"""The supervisor: starts the process's actors, restarts them, and escalates.

Children, in start order: the Claimer and the Reaper (permanent: always restarted) and N
Workers (transient: restarted only after a failure; a worker that ends normally, with
exit-on-complete or at shutdown, stays stopped).

Failure detection has two paths, because pykka reports only some deaths:
- a child's `on_failure` (and its wrapped `on_start`) tells `ActorDied`;
- a sweep on the supervisor's own tick finds children that are no longer alive without
  having ended normally (a failed `on_start`, a silent death).

Restarts are one-for-one and budgeted: at most `max_restarts` within `restart_window`
seconds, counted over all children (OTP intensity/period; the budget covers the whole
tree). A restarted child gets a new generation, so its ticker's old ticks are ignored, and
a restarted worker registers a new worker id; the old id stops heartbeating and the reaper
rescues its job (which its cancelled job thread no longer runs).

When the budget is spent the supervisor escalates: it stops claiming, cancels the running
jobs, and ends the pool with exit code 1; the pool then releases every job the process
still holds and deletes its worker rows. A graceful stop (signal, exit-on-error, or every
worker done with exit-on-complete) takes the same path with its own exit code, bounded by
`shutdown_timeout`.
"""
from __future__ import annotations

import collections
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pykka
from loguru import logger

from actors.claimer import Claimer, claim_types
from actors.config import Config
from actors.ledger import Ledger
from actors.messages import (ActorDied, ClaimerRestarted, Shutdown, StopPool, Tick, WorkerErrored,
                             WorkerStopped)
from actors.reaper import Reaper
from actors.signals import PoolSignals, note
from actors.ticker import Ticker
from actors.worker import Worker
from dataprep.context import Handler
from storage.db import Database

SWEEP_INTERVAL = 0.25  # seconds between liveness sweeps (also bounds stop latency)


@dataclass
class Child:
    """One supervised child: how to start it, and its current life."""

    name: str
    kind: str                         # "claimer" | "reaper" | "worker"
    start: Callable[[int], Any]       # generation → ActorRef
    ref: Any = None
    generation: int = 0
    done: bool = False                # ended normally; never restarted


class Supervisor(pykka.ThreadingActor):
    """The root actor of a process (one per pool).

    Args:
        on_done: called once, on the supervisor's thread, with the pool's exit code and
            the refs of the children it asked to stop.
        sweep_interval: seconds between liveness sweeps.
    """

    use_daemon_thread = True

    def __init__(self, *, db: Database, config: Config, ledger: Ledger,
                 handlers: Mapping[str, Handler], on_done: Callable[[int, list[Any]], None],
                 clock: Callable[[], dt.datetime], signals: PoolSignals | None = None,
                 hooks: Any = None, sweep_interval: float = SWEEP_INTERVAL) -> None:
        super().__init__()
        self.db = db
        self.config = config
        self.ledger = ledger
        self.handlers = handlers
        self.on_done = on_done
        self.clock = clock
        self.signals = signals
        self.hooks = hooks
        self.sweep_interval = sweep_interval
        self.children: dict[str, Child] = {}
        self.restarts: collections.deque[float] = collections.deque()
        self.stopping = False
        self.stop_deadline = 0.0
        self.exit_code = 0
        self.finished = False
        self.ticker: Ticker | None = None
        self.log = logger.bind(actor="supervisor")

    # -- lifecycle ----------------------------------------------------------------------

    def on_start(self) -> None:
        try:
            self.ticker = Ticker(self.actor_ref, self.sweep_interval, 0,
                                 name="supervisor-ticker").start()
            for child in self.child_specs():
                self.children[child.name] = child
                self.start_child(child)
            note(self.signals, "started")
        except BaseException as exc:  # noqa: BLE001 - pykka would swallow it
            self.log.opt(exception=exc).error("the supervisor failed to start: {}", exc)
            self.finish(1)

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self.log.error("the supervisor failed: {}", exception_value)
        self.finish(1)

    def on_receive(self, message: Any) -> None:
        try:
            self.handle(message)
        except Exception:
            raise
        except BaseException as exc:  # noqa: BLE001 - never stop every actor in the process
            raise RuntimeError(f"{type(exc).__name__} in the supervisor: {exc}") from exc

    def handle(self, message: Any) -> None:
        if isinstance(message, Tick):
            if self.ticker is not None:
                self.ticker.ack()
            self.sweep()
        elif isinstance(message, ActorDied):
            child = self.children.get(message.name)
            if child is not None and child.generation == message.generation and not child.done:
                self.child_died(child, message.reason)
        elif isinstance(message, WorkerStopped):
            child = self.children.get(message.name)
            if child is not None and child.generation == message.generation:
                child.done = True
            self.check_all_done()
        elif isinstance(message, WorkerErrored):
            if not self.stopping:
                self.log.error("job {} failed and exit-on-error is set: stopping", message.job_id)
                self.begin_stop(1, "exit on error")
        elif isinstance(message, StopPool):
            self.begin_stop(message.exit_code, message.reason)

    # -- children -----------------------------------------------------------------------

    def child_specs(self) -> list[Child]:
        common = {"db": self.db, "config": self.config, "ledger": self.ledger,
                  "signals": self.signals}
        me = self.actor_ref

        def claimer(gen: int) -> Any:
            return Claimer.start(types=claim_types(self.config), name="claimer", generation=gen,
                                 supervisor=me, clock=self.clock, hooks=self.hooks, **common)

        def reaper(gen: int) -> Any:
            return Reaper.start(name="reaper", generation=gen, supervisor=me, clock=self.clock,
                                **common)

        specs = [Child("claimer", "claimer", claimer)]
        if self.config.reaper.enabled:
            specs.append(Child("reaper", "reaper", reaper))
        for i in range(max(1, self.config.worker.concurrency)):
            name = f"worker-{i}"

            def worker(gen: int, name: str = name) -> Any:
                return Worker.start(handlers=self.handlers, hooks=self.hooks, name=name,
                                    generation=gen, supervisor=me, clock=self.clock, **common)

            specs.append(Child(name, "worker", worker))
        return specs

    def start_child(self, child: Child) -> None:
        child.generation += 1
        child.ref = child.start(child.generation)
        if child.kind == "claimer":
            # Set here as well as in the claimer's on_start, so workers started right after
            # never see the previous (dead) claimer.
            self.ledger.claimer_ref = child.ref

    def child_died(self, child: Child, reason: str) -> None:
        if child.kind == "worker":
            self.ledger.retire_name(child.name)
        if self.stopping:
            return
        now = time.monotonic()
        window = self.config.supervisor.restart_window
        self.restarts.append(now)
        while self.restarts and now - self.restarts[0] > window:
            self.restarts.popleft()
        if len(self.restarts) > self.config.supervisor.max_restarts:
            self.log.error("{} died ({}); more than {} restarts within {}s: escalating",
                           child.name, reason, self.config.supervisor.max_restarts, window)
            note(self.signals, "escalated", name=child.name)
            self.begin_stop(1, "restart budget spent")
            return
        self.log.warning("{} died ({}); restarting it", child.name, reason)
        try:
            self.start_child(child)
        except Exception as exc:  # noqa: BLE001 - the next sweep tries again, within budget
            self.log.error("restarting {} failed: {}", child.name, exc)
            return
        note(self.signals, "restarted", name=child.name, generation=child.generation)
        if child.kind == "claimer":
            for ref in self.ledger.worker_refs():
                try:
                    ref.tell(ClaimerRestarted())
                except pykka.ActorDeadError:
                    pass

    def sweep(self) -> None:
        for child in self.children.values():
            if child.done or child.ref is None or child.ref.is_alive():
                continue
            if self.ledger.finished(child.name, child.generation):
                child.done = True
                continue
            if not self.stopping:
                self.child_died(child, "found dead by the liveness sweep")
        if self.stopping:
            self.check_stopped()
        else:
            self.check_all_done()

    def check_all_done(self) -> None:
        workers = [c for c in self.children.values() if c.kind == "worker"]
        if workers and all(c.done for c in workers) and not self.stopping:
            self.log.info("every worker is done (exit-on-complete): stopping")
            self.begin_stop(0, "no work left")

    # -- stopping -----------------------------------------------------------------------

    def begin_stop(self, exit_code: int, reason: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.exit_code = exit_code
        self.stop_deadline = time.monotonic() + self.config.supervisor.shutdown_timeout
        self.log.info("stopping ({})", reason)
        note(self.signals, "stopping", reason=reason, exit_code=exit_code)
        for child in self.children.values():
            if child.kind in ("claimer", "worker") and child.ref is not None:
                try:
                    child.ref.tell(Shutdown())
                except pykka.ActorDeadError:
                    pass
        self.check_stopped()

    def check_stopped(self) -> None:
        workers = [c for c in self.children.values() if c.kind == "worker"]
        running = [c for c in workers if c.ref is not None and c.ref.is_alive()]
        if running and time.monotonic() < self.stop_deadline:
            return
        if running:
            self.log.warning("{} worker(s) did not stop within {}s", len(running),
                             self.config.supervisor.shutdown_timeout)
        self.finish(self.exit_code)

    def finish(self, exit_code: int) -> None:
        """Stop every child and report the exit code (once)."""
        if self.finished:
            return
        self.finished = True
        if self.ticker is not None:
            self.ticker.stop()
        for child in reversed(list(self.children.values())):
            if child.ref is not None:
                try:
                    child.ref.stop(block=False)
                except pykka.ActorDeadError:
                    pass
        note(self.signals, "finished", exit_code=exit_code)
        try:
            self.on_done(exit_code, self.child_refs())
        finally:
            self.stop()

    def child_refs(self) -> list[Any]:
        return [c.ref for c in self.children.values() if c.ref is not None]
