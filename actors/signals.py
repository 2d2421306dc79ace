"""Test signals: what the actors report, so that tests can wait instead of sleeping.

The pool takes an optional `PoolSignals`; the actors `note()` each notable step on it
(claimed, settled, cancelled, restarted, escalated, reaped, ...), and a test waits with
`wait_for(lambda: ..., timeout)`. In production it is None and costs nothing.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True, slots=True)
class Note:
    at: float          # time.monotonic()
    kind: str
    data: dict


class PoolSignals:
    """A thread-safe log of notes, plus the stop request a test (not a signal) can make."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._notes: list[Note] = []
        self.stop_requested = threading.Event()
        self.supervisor_ref: Any = None

    def note(self, kind: str, /, **data: Any) -> None:
        with self._cond:
            self._notes.append(Note(time.monotonic(), kind, data))
            self._cond.notify_all()

    def notes(self, kind: str | None = None) -> list[Note]:
        with self._cond:
            return [n for n in self._notes if kind is None or n.kind == kind]

    def count(self, kind: str, /, **match: Any) -> int:
        return sum(1 for n in self.notes(kind) if all(n.data.get(k) == v for k, v in match.items()))

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until `condition()` holds (re-checked on each note, and every 50 ms)."""
        deadline = time.monotonic() + timeout
        while True:
            # The condition runs outside the lock: it may query the database.
            if condition():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._cond:
                self._cond.wait(min(remaining, 0.05))

    def request_stop(self) -> None:
        """Ask the pool to stop gracefully, as SIGTERM would."""
        self.stop_requested.set()


def note(signals: PoolSignals | None, kind: str, /, **data: Any) -> None:
    """`signals.note(...)` if there are signals."""
    if signals is not None:
        signals.note(kind, **data)
