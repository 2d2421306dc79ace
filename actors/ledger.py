"""What one process holds: its worker ids and the jobs handed out to them.

The ledger is shared by the actors of one process and outlives any of them: a restarted
claimer finds the jobs its predecessor handed out, and the pool's final cleanup (after a
graceful stop or an escalation) knows every job to release and every worker row to delete,
even those of workers that crashed. It is plain data behind a lock; the actors still talk
only by messages.
"""
from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class HandedOut:
    """A job this process claimed: who runs it, and its attempt number at the claim."""

    job_id: int
    worker_id: str
    job_type: str
    attempts: int


class Ledger:
    """Thread-safe record of the process's workers and claimed jobs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, Any] = {}          # worker id → ActorRef of a running worker
        self._names: dict[str, str] = {}         # actor name → its current worker id
        self._registered: set[str] = set()       # every id this process registered
        self._jobs: dict[int, HandedOut] = {}
        self._claimer_ref: Any = None
        self._finished: set[tuple[str, int]] = set()  # children that ended normally
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.holder = f"{self.hostname}:{self.pid}:{uuid.uuid4().hex[:8]}"

    # -- workers ------------------------------------------------------------------------

    def add_worker(self, worker_id: str, ref: Any, name: str = "") -> None:
        with self._lock:
            self._live[worker_id] = ref
            self._registered.add(worker_id)
            if name:
                self._names[name] = worker_id

    def retire_name(self, name: str) -> str | None:
        """Stop heartbeating the worker id that actor `name` registered, if any."""
        with self._lock:
            worker_id = self._names.pop(name, None)
            if worker_id is not None:
                self._live.pop(worker_id, None)
            return worker_id

    def retire_worker(self, worker_id: str) -> None:
        """Stop heartbeating `worker_id` (it stopped or died); its row stays until cleanup."""
        with self._lock:
            self._live.pop(worker_id, None)

    def forget_registration(self, worker_id: str) -> None:
        """`worker_id`'s row was deleted: nothing left to clean up for it."""
        with self._lock:
            self._live.pop(worker_id, None)
            self._registered.discard(worker_id)

    def live_workers(self) -> list[str]:
        with self._lock:
            return list(self._live)

    def registered_workers(self) -> list[str]:
        with self._lock:
            return sorted(self._registered)

    def worker_ref(self, worker_id: str) -> Any:
        with self._lock:
            return self._live.get(worker_id)

    def worker_refs(self) -> list[Any]:
        with self._lock:
            return list(self._live.values())

    # -- jobs ---------------------------------------------------------------------------

    def hand_out(self, job_id: int, worker_id: str, job_type: str, attempts: int) -> None:
        with self._lock:
            self._jobs[job_id] = HandedOut(job_id, worker_id, job_type, attempts)

    def settle(self, job_id: int) -> HandedOut | None:
        with self._lock:
            return self._jobs.pop(job_id, None)

    def handed_out(self) -> list[HandedOut]:
        with self._lock:
            return list(self._jobs.values())

    def job(self, job_id: int) -> HandedOut | None:
        with self._lock:
            return self._jobs.get(job_id)

    def mark_finished(self, name: str, generation: int) -> None:
        """Child `name` (this generation) ends normally: its death is not a failure."""
        with self._lock:
            self._finished.add((name, generation))

    def finished(self, name: str, generation: int) -> bool:
        with self._lock:
            return (name, generation) in self._finished

    # -- claimer ------------------------------------------------------------------------

    @property
    def claimer_ref(self) -> Any:
        with self._lock:
            return self._claimer_ref

    @claimer_ref.setter
    def claimer_ref(self, ref: Any) -> None:
        with self._lock:
            self._claimer_ref = ref
