"""A timer for actors: a small daemon thread that tells `Tick(generation)` at an interval.

pykka has no timers. Each actor that needs one starts a `Ticker` in `on_start` with the
generation it was given by the supervisor, and stops it in `on_stop`. A restarted actor gets
a new generation, so a tick from its previous life (still in flight) is recognised and
ignored. The ticker ends by itself when the actor is dead.

At most one tick is in flight: the next is sent only after the actor has `ack()`ed the last
one. An actor blocked in a long database call therefore finds one tick waiting, not a pile
of them queued ahead of its stop message.
"""
from __future__ import annotations

import threading
from typing import Any

import pykka

from actors.messages import Tick


class Ticker:
    """Tells `ref` a `Tick(generation)` every `interval` seconds.

    Args:
        ref: the actor to tick.
        interval: seconds between ticks.
        generation: the life of the actor this ticker belongs to.
        immediate: send the first tick at once instead of after one interval.
        name: the thread name (shows in stack dumps).
    """

    def __init__(self, ref: pykka.ActorRef[Any], interval: float, generation: int, *,
                 immediate: bool = False, name: str = "ticker") -> None:
        self._ref = ref
        self._interval = max(0.001, float(interval))
        self._generation = generation
        self._immediate = immediate
        self._stopped = threading.Event()
        self._in_flight = threading.Event()
        self.sent = 0       # ticks told
        self.skipped = 0    # beats skipped because a tick was still in flight
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop ticking (does not wait for the thread; it wakes and ends at once)."""
        self._stopped.set()

    def ack(self) -> None:
        """The actor handled a tick: the next one may be sent."""
        self._in_flight.clear()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        if self._immediate and not self._tell():
            return
        while not self._stopped.wait(self._interval):
            if not self._tell():
                return

    def _tell(self) -> bool:
        if self._in_flight.is_set():
            # The last tick is still queued or being handled (or the actor died with it).
            self.skipped += 1
            return self._ref.is_alive()
        self._in_flight.set()
        self.sent += 1
        try:
            self._ref.tell(Tick(self._generation))
        except pykka.ActorDeadError:
            return False
        return True
