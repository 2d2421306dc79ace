"""The reaper: rescues the jobs of dead workers, deletes orphans, sweeps temp outputs.

Every process may run one (`[reaper] enabled`); the `reaper` lease elects which one acts.
Each cycle (one right after start, then every `interval`) first acquires or renews the
lease with `lease_ttl`; a process that does not hold it does nothing else. A holder:

1. rescues the jobs of workers whose heartbeat is older than `stale_after`
   (`storage.reaping.rescue_stale_workers`, compare-and-set on worker and state);
2. deletes orphan rows in batches for at most `batch_time_budget` seconds
   (`storage.reaping.reap_orphans`);
3. removes temporary CAR files older than `stale_after` from the output storages
   (`dataprep.output.sweep_temp_files`): a running pack job keeps writing its file, so
   only files of dead jobs get that old.

A failing step is logged (rate-limited) and the next step still runs; the reaper itself
never dies of a database error. On a normal stop it gives the lease back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.config import Config
from actors.failures import SupervisedActor, is_outage
from actors.ledger import Ledger
from actors.messages import Tick
from actors.ratelog import RateLimitedLog
from actors.signals import PoolSignals, note
from actors.ticker import Ticker
from storage.db import Database

LEASE_NAME = "reaper"


@dataclass(frozen=True, slots=True)
class CycleResult:
    """What one cycle did (None fields: the step failed)."""

    rescued: Any = None
    reaped: Any = None
    swept: int | None = None


class Reaper(SupervisedActor):
    """The maintenance actor of the process (permanent child of the supervisor)."""

    def __init__(self, *, db: Database, config: Config, ledger: Ledger,
                 signals: PoolSignals | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.db = db
        self.cfg = config.reaper
        self.holder = ledger.holder
        self.signals = signals
        self.ratelog = RateLimitedLog()
        self.ticker: Ticker | None = None
        self.holding = False

    def start_actor(self) -> None:
        # The first cycle runs here, before the inbox is read: a tick from the ticker thread
        # could arrive after the stop of an exit-on-complete pool that had nothing to do,
        # and the orphans it should have reaped would stay.
        self.run_once()
        self.ticker = Ticker(self.actor_ref, self.cfg.interval, self.generation,
                             immediate=False, name=f"{self.name}-ticker").start()

    def stop_actor(self) -> None:
        if self.ticker is not None:
            self.ticker.stop()
        if self.holding:
            from storage.lease import release_lease
            try:
                release_lease(self.db, LEASE_NAME, self.holder)
            except Exception as exc:  # noqa: BLE001 - it expires by itself
                self.log.debug("releasing the reaper lease failed: {}", exc)
        self.db.close()

    def handle(self, message: Any) -> None:
        if isinstance(message, Tick):
            self.run_once()

    def run_once(self) -> CycleResult | None:
        """One cycle; None when another process holds the lease (or it cannot be read)."""
        from storage.lease import acquire_lease
        from storage.reaping import reap_orphans, rescue_stale_workers

        now = self.clock()
        try:
            self.holding = acquire_lease(self.db, LEASE_NAME, self.holder, self.cfg.lease_ttl,
                                         now=now)
        except Exception as exc:  # noqa: BLE001
            self._error("lease", exc)
            self.holding = False
        if not self.holding:
            note(self.signals, "reaper_skipped", holder=self.holder)
            return None
        note(self.signals, "reaper_acting", holder=self.holder)
        rescued = self._step("rescue", lambda: rescue_stale_workers(
            self.db, stale_after=self.cfg.stale_after, now=now))
        reaped = self._step("reap", lambda: reap_orphans(
            self.db, time_budget=self.cfg.batch_time_budget, now=now))
        swept = self._step("sweep", lambda: self.sweep_temp_files(now))
        result = CycleResult(rescued, reaped, swept)
        note(self.signals, "reaped", holder=self.holder, result=result)
        return result

    def sweep_temp_files(self, now: Any) -> int:
        """Remove stale temporary CAR files from every local storage's directory."""
        try:
            from dataprep.output import sweep_temp_files
        except ImportError:
            return 0  # the data path is not installed; nothing of ours to sweep
        from storage.catalog import list_storages

        dirs = [s.path for s in list_storages(self.db) if s.type == "local"]
        return sweep_temp_files(dirs, self.cfg.stale_after, now=now)

    def _step(self, what: str, fn: Any) -> Any:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - one failed step never stops the next
            self._error(what, exc)
            return None
        if _counts_something(result):
            self.log.bind(action=what).info("reaper {}: {}", what, result)
        return result

    def _error(self, what: str, exc: BaseException) -> None:
        level = "WARNING" if is_outage(exc) else "ERROR"
        self.ratelog(self.log.bind(action=what), level,
                     f"reaper {what} failed: {type(exc).__name__}: {exc}")


def _counts_something(result: Any) -> bool:
    """True when a step's result reports work done (log only those)."""
    if result is None:
        return False
    if isinstance(result, int):
        return result > 0
    counts = [getattr(result, a, 0) for a in ("stale_workers", "rescued_jobs", "detached_jobs",
                                              "deleted_workers", "total")]
    return any(isinstance(c, int) and c > 0 for c in counts)


def make_config_check(config: Config) -> None:
    """Warn about reaper settings that cannot work together."""
    from loguru import logger

    cfg = config.reaper
    if cfg.enabled and cfg.lease_ttl <= cfg.interval:
        logger.warning("reaper lease_ttl ({}s) should exceed its interval ({}s), or the lease "
                       "lapses between cycles", cfg.lease_ttl, cfg.interval)
    if cfg.heartbeat_interval >= cfg.stale_after:
        logger.warning("heartbeat_interval ({}s) should be well below stale_after ({}s), or "
                       "live workers look dead and their jobs are rescued under them",
                       cfg.heartbeat_interval, cfg.stale_after)
