"""Restarts of every kind of child, timers across restarts, and a start/stop stress test."""
from __future__ import annotations

import queue
import threading
import time

import pykka

from actors.failures import SupervisedActor
from actors.messages import Tick
from actors.testing import Faults, PoolHarness, Script, test_config, wait_for
from actors.ticker import Ticker
from storage.db import connect
from storage.models import utcnow
from tests.actors.conftest import all_in, states, worker_count
from tests.factories import make_jobs, make_source


def _jobs(db, count: int) -> list[int]:
    src = make_source(db)
    before = set(states(db))
    make_jobs(db, src.attachment_id, count, "pack")
    return sorted(set(states(db)) - before)


class TickRecorder(pykka.ThreadingActor):
    """Acks each tick after its (slow) handling, like the pool's actors do."""

    use_daemon_thread = True

    def __init__(self, seen: queue.Queue, release: threading.Event) -> None:
        super().__init__()
        self.seen = seen
        self.release = release
        self.ticker: Ticker | None = None

    def on_start(self) -> None:
        self.ticker = Ticker(self.actor_ref, 0.005, 2, immediate=True).start()
        self.seen.put(self.ticker)

    def on_receive(self, message):
        if isinstance(message, Tick) and message.generation == 2:
            self.seen.put(message.generation)
            self.release.wait(5)     # a slow handler: ticks must not pile up meanwhile
            assert self.ticker is not None
            self.ticker.ack()


def test_ticker_keeps_one_tick_in_flight_and_ends_when_its_actor_is_dead():
    seen: queue.Queue = queue.Queue()
    release = threading.Event()
    actor = TickRecorder.start(seen, release)
    ticker = seen.get(timeout=2)
    assert seen.get(timeout=2) == 2
    assert wait_for(lambda: ticker.skipped >= 5, 2)   # beats passed while the handler ran
    assert ticker.sent == 1
    release.set()
    assert seen.get(timeout=2) == 2                   # ticking resumes after the ack
    actor.stop()
    assert wait_for(lambda: not ticker.alive, 2)


class Probe(SupervisedActor):
    """A supervised actor that records what reaches its `handle`."""

    def __init__(self, seen: queue.Queue, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seen = seen

    def handle(self, message) -> None:
        self.seen.put(message)


def test_ticks_of_an_older_generation_never_reach_the_actor():
    seen: queue.Queue = queue.Queue()
    supervisor = TickRecorder.start(queue.Queue(), threading.Event())
    probe = Probe.start(seen, name="probe", generation=3, supervisor=supervisor, clock=utcnow)
    probe.tell(Tick(2))
    probe.tell(Tick(1))
    probe.tell(Tick(3))
    assert seen.get(timeout=2) == Tick(3)
    assert seen.empty()
    probe.stop()
    supervisor.stop()


def test_claimer_crashes_are_restarted_and_workers_carry_on(db_url):
    db = connect(db_url)
    ids = _jobs(db, 8)
    faults = Faults(crash_claimer=2)
    with PoolHarness(test_config(db_url, concurrency=2), Script(), db=db, faults=faults) as pool:
        assert pool.wait_for(lambda: all_in(db, "complete", ids), 15)
        assert pool.signals.count("restarted", name="claimer") == 2
    assert pool.exit_code == 0


def test_worker_failing_in_on_start_is_restarted(db_url):
    db = connect(db_url)
    ids = _jobs(db, 4)
    faults = Faults(fail_start={"worker-1"})
    with PoolHarness(test_config(db_url, concurrency=2), Script(), db=db, faults=faults) as pool:
        assert pool.wait_for(lambda: pool.signals.count("restarted", name="worker-1") == 1, 10)
        assert pool.wait_for(lambda: all_in(db, "complete", ids), 10)
        assert pool.wait_for(lambda: pool.signals.count("registered", name="worker-1") == 1, 5)


def test_liveness_sweep_replaces_a_worker_that_vanished_silently(db_url):
    db = connect(db_url)
    with PoolHarness(test_config(db_url, concurrency=2), Script(), db=db) as pool:
        assert pool.wait_for(lambda: pool.signals.count("registered") == 2, 10)
        refs = pool.signals.supervisor_ref.proxy().child_refs().get(timeout=5)
        worker = [r for r in refs if r.actor_class.__name__ == "Worker"][0]
        worker.stop(block=True, timeout=5)   # dies without telling anyone
        assert pool.wait_for(lambda: pool.signals.count("restarted") == 1, 5)
        assert pool.wait_for(lambda: pool.signals.count("registered") == 3, 5)
    assert pool.exit_code == 0
    assert worker_count(db) == 0


def test_pool_survives_repeated_start_and_stop(db_url):
    db = connect(db_url)
    ids = _jobs(db, 30)
    baseline = threading.active_count()
    actors_before = set(map(id, pykka.ActorRegistry.get_all()))
    for _ in range(8):
        pool = PoolHarness(test_config(db_url, concurrency=3), Script(), db=db).start()
        asked = time.monotonic()
        assert pool.stop(10) == 0
        assert time.monotonic() - asked < 2.0  # nobody waits for the shutdown timeout
        assert worker_count(db) == 0
        assert set(states(db, ids).values()) <= {"ready", "complete"}
    assert wait_for(lambda: not set(map(id, pykka.ActorRegistry.get_all())) - actors_before, 5)
    assert wait_for(lambda: threading.active_count() <= baseline, 5)
    pool = PoolHarness(test_config(db_url, concurrency=3, exit_on_complete=True), Script(),
                       db=db).start()
    assert pool.join(15) == 0
    assert all_in(db, "complete", ids)
