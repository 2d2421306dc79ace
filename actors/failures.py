"""Shared plumbing for the actors: reporting failures to the supervisor, classifying errors.

pykka calls `on_failure` only for exceptions in `tell` handlers, never for `on_start`, and a
`BaseException` in any actor stops every actor in the process. `SupervisedActor` closes
those gaps: `on_start` and `on_receive` are wrapped so that any failure (BaseException
turned into an ordinary exception first) ends this actor alone and tells the supervisor
`ActorDied`.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

import pykka
from loguru import logger

from actors.messages import ActorDied, Tick
from storage.errors import DatabaseUnavailable, StorageError


class ActorCrashed(Exception):
    """A BaseException escaped an actor's code; re-raised as this so that only it stops."""


def is_outage(exc: BaseException) -> bool:
    """True when `exc` means the database is unreachable or busy, not that the call is wrong."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, StorageError):
        text = str(exc).lower()
        return "database is locked" in text or "database table is locked" in text \
            or "connection" in text
    return False


class SupervisedActor(pykka.ThreadingActor):
    """A pykka actor that reports its own death to its supervisor.

    Subclasses implement `start_actor()` (instead of `on_start`), `handle(message)`
    (instead of `on_receive`), `stop_actor()` (instead of `on_stop`) and may override
    `crashed()` for cleanup after a failure. All run on the actor's own thread.
    """

    use_daemon_thread = True

    def __init__(self, *, name: str, generation: int, supervisor: Any,
                 clock: Callable[[], dt.datetime]) -> None:
        super().__init__()
        self.name = name
        self.generation = generation
        self.supervisor = supervisor
        self.clock = clock
        self.log = logger.bind(actor=name)
        self._reported = False

    # -- pykka hooks --------------------------------------------------------------------

    def on_start(self) -> None:
        try:
            self.start_actor()
        except BaseException as exc:  # noqa: BLE001 - pykka would swallow it silently
            self._report(f"on_start failed: {type(exc).__name__}: {exc}")
            raise ActorCrashed(f"{self.name} failed to start: {exc!r}") from exc

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Tick):
            if message.generation != self.generation:
                return None  # a tick from a previous life of this actor
            ticker = getattr(self, "ticker", None)
            if ticker is not None:
                ticker.ack()
        try:
            return self.handle(message)
        except Exception:
            raise
        except BaseException as exc:  # noqa: BLE001 - would stop every actor in the process
            raise ActorCrashed(f"{type(exc).__name__} in {self.name}: {exc}") from exc

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        try:
            self.crashed()
        finally:
            self._report(f"{getattr(exception_type, '__name__', exception_type)}: "
                         f"{exception_value}")

    def on_stop(self) -> None:
        self.stop_actor()

    # -- for subclasses -----------------------------------------------------------------

    def start_actor(self) -> None:
        """Set up (on the actor's thread). Raising here is reported as a death."""

    def handle(self, message: Any) -> Any:
        raise NotImplementedError

    def stop_actor(self) -> None:
        """Tear down after a normal stop."""

    def crashed(self) -> None:
        """Tear down after a failure (on_stop is not called then)."""
        self.stop_actor()

    def _report(self, reason: str) -> None:
        if self._reported:
            return
        self._reported = True
        self.log.error("actor {} died: {}", self.name, reason)
        try:
            self.supervisor.tell(ActorDied(self.name, self.generation, reason))
        except pykka.ActorDeadError:
            pass
