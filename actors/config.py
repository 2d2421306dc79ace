"""Every setting of pieceworks, declared once, with its default.

Durations are seconds (float); sizes are bytes (int). The order follows
config.example.toml. The loader (TOML, then environment, then flags) lives beside it.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, Mapping


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


# --------------------------------------------------------------------------------------------
# The loader: TOML file, then environment, then flags (each one overrides the one before).
# --------------------------------------------------------------------------------------------

ENV_PREFIX = "PIECEWORKS_"
DEFAULT_CONFIG_FILE = "config.toml"
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


class ConfigError(Exception):
    """The configuration is not valid; the message names the key."""


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
    "ti": 1024**4, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_duration(value: str | int | float) -> float:
    """Seconds from `"500ms"`, `"5s"`, `"2m"`, `"1h"` or a plain number of seconds.

    Raises:
        ValueError: the value is not a non-negative duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. \"500ms\", \"5s\", \"2m\", \"1h\")")
        seconds = float(match.group(1)) * _DURATION_UNITS[(match.group(2) or "s").lower()]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {value!r}")
    return seconds


def parse_size(value: str | int | float) -> int:
    """Bytes from `"31.5GiB"`, `"1MiB"`, `"1k"`, `"4096"` (k/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of 1024).

    Raises:
        ValueError: the value is not a non-negative size.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a size: {value!r}")
        size = int(value)
    else:
        match = _SIZE_RE.match(str(value))
        unit = match.group(2).lower() if match else None
        if not match or unit not in _SIZE_UNITS:
            raise ValueError(f"not a size: {value!r} (use e.g. \"4096\", \"1MiB\", \"31.5GiB\")")
        size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if size < 0:
        raise ValueError(f"not a size: {value!r}")
    return size


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
    raise ValueError(f"not a boolean: {value!r} (use true or false)")


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise ValueError(f"not an integer: {value!r}")


def _parse_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"not a string: {value!r}")


def _parser_for(field_type: Any) -> Any:
    # Annotations are strings here (`from __future__ import annotations`).
    return {"bool": _parse_bool, "int": _parse_int, "float": parse_duration,
            "str": _parse_str}[str(field_type)]


def _sections() -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(Config)}  # type: ignore[misc]


def _keys(section_cls: type) -> dict[str, Any]:
    return {f.name: f.type for f in dataclasses.fields(section_cls)}


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _from_file(path: str, sections: dict[str, type]) -> dict[str, Any]:
    raw = _read_toml(path)
    found: dict[str, Any] = {}
    for section, table in raw.items():
        if section not in sections:
            raise ConfigError(f"{path}: unknown config section [{section}]")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        known = _keys(sections[section])
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"{path}: unknown config key {section}.{key}")
            found[f"{section}.{key}"] = (value, f"{section}.{key} in {path}")
    return found


def _from_env(env: Mapping[str, str], sections: dict[str, type]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section = next((s for s in sections if rest.startswith(s + "_")), None)
        if section is None:
            continue  # other PIECEWORKS_* variables (tests, tools) are not settings
        key = rest[len(section) + 1:]
        if key not in _keys(sections[section]):
            raise ConfigError(f"unknown config key {section}.{key} (environment variable {name})")
        found[f"{section}.{key}"] = (value, f"{section}.{key} (environment variable {name})")
    return found


def load_config(path: str | None, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the `Config`: defaults, then the TOML file, then `PIECEWORKS_*`, then flags.

    Args:
        path: the TOML file; None means `./config.toml` if it exists, else no file.
        env: the environment (normally `os.environ`).
        overrides: flag values by dotted key (`"worker.concurrency"`); None values are unset flags.

    Raises:
        ConfigError: a missing file, bad TOML, an unknown key or a bad value (one line, naming
            the key and where it was set).
    """
    sections = _sections()
    settings: dict[str, Any] = {}
    if path is None and os.path.isfile(DEFAULT_CONFIG_FILE):
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        settings.update(_from_file(path, sections))
    settings.update(_from_env(env or {}, sections))
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if section not in sections or key not in _keys(sections[section]):
            raise ConfigError(f"unknown config key {dotted}")
        settings[dotted] = (value, f"{dotted} (command-line flag)")

    values: dict[str, dict[str, Any]] = {s: {} for s in sections}
    for dotted, (raw, where) in settings.items():
        section, key = dotted.split(".", 1)
        try:
            values[section][key] = _parser_for(_keys(sections[section])[key])(raw)
        except ValueError as exc:
            raise ConfigError(f"bad value for {where}: {exc}") from None
    config = Config(**{s: cls(**values[s]) for s, cls in sections.items()})
    validate(config, {d: w for d, (_, w) in settings.items()})
    return config


def validate(config: Config, where: Mapping[str, str] | None = None) -> None:
    """Check the values that every parser accepts but pieceworks cannot use.

    Raises:
        ConfigError: naming the first bad key.
    """
    where = where or {}

    def bad(dotted: str, why: str) -> ConfigError:
        return ConfigError(f"bad value for {where.get(dotted, dotted)}: {why}")

    w, r, s, log = config.worker, config.reaper, config.supervisor, config.log
    if not config.database.url.strip():
        raise bad("database.url", "must not be empty")
    if w.concurrency < 1:
        raise bad("worker.concurrency", f"{w.concurrency} (must be at least 1)")
    if w.max_attempts < 1:
        raise bad("worker.max_attempts", f"{w.max_attempts} (must be at least 1)")
    for dotted, value in (("worker.min_interval", w.min_interval),
                          ("worker.max_interval", w.max_interval),
                          ("worker.watch_interval", w.watch_interval),
                          ("reaper.interval", r.interval), ("reaper.stale_after", r.stale_after),
                          ("reaper.heartbeat_interval", r.heartbeat_interval),
                          ("reaper.lease_ttl", r.lease_ttl),
                          ("reaper.batch_time_budget", r.batch_time_budget),
                          ("supervisor.restart_window", s.restart_window),
                          ("supervisor.shutdown_timeout", s.shutdown_timeout)):
        if value <= 0:
            raise bad(dotted, f"{value:g}s (must be more than 0)")
    if w.max_interval < w.min_interval:
        raise bad("worker.max_interval",
                  f"{w.max_interval:g}s is less than worker.min_interval ({w.min_interval:g}s)")
    if r.stale_after <= r.heartbeat_interval:
        raise bad("reaper.stale_after", f"{r.stale_after:g}s must be more than "
                  f"reaper.heartbeat_interval ({r.heartbeat_interval:g}s)")
    if s.max_restarts < 0:
        raise bad("supervisor.max_restarts", f"{s.max_restarts} (must be 0 or more)")
    if log.level.upper() not in LOG_LEVELS:
        raise bad("log.level", f"{log.level!r} (one of {', '.join(LOG_LEVELS)})")
    if log.format not in LOG_FORMATS:
        raise bad("log.format", f"{log.format!r} (one of text, json)")
