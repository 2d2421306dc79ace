"""Logging a repeated error once in a while instead of on every retry.

During a database outage every worker retries every few seconds; logging each failure
would flood the log (graphile-worker #224). The first occurrence of a message is logged at
once; repeats within `period` seconds are counted and summarised with the next line.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable


class RateLimitedLog:
    """Logs each distinct message at most once per `period` seconds."""

    def __init__(self, period: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._period = period
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}

    def __call__(self, log: Any, level: str, message: str) -> bool:
        """Log `message` at `level` through the loguru logger `log`, unless it repeats.

        Returns:
            True if the line was written.
        """
        now = self._clock()
        with self._lock:
            last, suppressed = self._seen.get(message, (None, 0))
            if last is not None and now - last < self._period:
                self._seen[message] = (last, suppressed + 1)
                return False
            self._seen[message] = (now, 0)
        suffix = f" (repeated {suppressed} more times)" if suppressed else ""
        log.opt(depth=1).log(level, "{}{}", message, suffix)
        return True

    def clear(self, message: str | None = None) -> None:
        """Forget one message (or all): the condition is over, log it again next time."""
        with self._lock:
            if message is None:
                self._seen.clear()
            else:
                self._seen.pop(message, None)
