"""Every setting of pieceworks, declared once, with its default.

Durations are seconds (float); sizes are bytes (int). The order follows
config.example.toml. The loader (TOML, then environment, then flags) lives beside it.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///pieceworks.db"


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = 1
    enable_scan: bool = True
    enable_pack: bool = True
    enable_dag: bool = True
    exit_on_complete: bool = False
    exit_on_error: bool = False
    min_interval: float = 5.0        # idle/error backoff starts here ...
    max_interval: float = 160.0      # ... and doubles up to here (SPEC §4.3)
    max_attempts: int = 3            # claims of one job before it is quarantined in `error`
    watch_interval: float = 1.0      # how often the claimer checks handed-out jobs for pause


@dataclass(frozen=True)
class ReaperConfig:
    enabled: bool = True
    interval: float = 300.0          # one reap cycle every 5 min (SPEC §5)
    stale_after: float = 300.0       # a worker silent this long is dead (SPEC §4.4)
    heartbeat_interval: float = 60.0
    lease_ttl: float = 900.0         # the reaper lease outlives a missed cycle or two
    batch_time_budget: float = 30.0  # orphan batches repeat while full, for at most this long


@dataclass(frozen=True)
class SupervisorConfig:
    max_restarts: int = 5            # restarts allowed ...
    restart_window: float = 60.0     # ... within this many seconds, then escalate
    shutdown_timeout: float = 10.0


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"
    format: str = "text"             # text | json
    file: str = ""                   # empty: stderr


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    reaper: ReaperConfig = field(default_factory=ReaperConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    log: LogConfig = field(default_factory=LogConfig)
