"""Shared state of one command-line run: the config, the database, logging, and errors.

Every error a user can cause becomes one line on stderr: exit 2 for usage errors, 1 for the
rest. Only `--log-level DEBUG` adds a traceback (for unexpected errors).
"""
from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Mapping, NoReturn

import click
import peewee as pw
from loguru import logger

from actors.config import Config, ConfigError, load_config
from dataprep.errors import DataprepError
from storage.db import Database, connect
from storage.errors import StorageError

TEXT_FORMAT = ("<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <7}</level> | "
               "<cyan>{name}</cyan> | {message}")
USER_ERRORS = (ConfigError, StorageError, DataprepError, OSError, pw.DatabaseError)


class CliError(click.ClickException):
    """An error the user can fix; printed as one line, exit 1."""


@dataclass
class AppState:
    """Carried on `ctx.obj`: the global options, and what they open, made on first use."""

    config_path: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    overrides: dict[str, Any] = field(default_factory=dict)
    debug: bool = False
    _config: Config | None = None
    _db: Database | None = None

    def config(self, **more: Any) -> Config:
        """The config (file, environment, global flags), plus command flags in `more`.

        Keys of `more` are dotted (`worker.concurrency`) with `.` written as `__`.
        """
        if more:
            extra = {k.replace("__", "."): v for k, v in more.items()}
            return load_config(self.config_path, self.env, {**self.overrides, **extra})
        if self._config is None:
            self._config = load_config(self.config_path, self.env, self.overrides)
            setup_logging(self._config)
            self.debug = self._config.log.level.upper() in ("DEBUG", "TRACE")
        return self._config

    def db(self) -> Database:
        """The database of the config, connected, with its schema created or checked."""
        if self._db is None:
            self._db = open_database(self.config().database.url)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def open_database(url: str) -> Database:
    """Connect; create or upgrade the schema (DESIGN: automatically at start); refuse a newer one."""
    from storage import schema

    db = connect(url)
    if schema.schema_version(db) < schema.SCHEMA_VERSION:
        schema.init_schema(db)
    schema.check_schema(db)
    return db


def setup_logging(config: Config, stderr: Any = None, colorize: bool | None = None) -> None:
    """loguru: the configured level, text or JSON lines, to stderr or the configured file.

    Args:
        stderr: a callable taking each formatted line, used instead of stderr (not instead
            of a configured file); ez-prep's progress line uses it to keep log lines apart.
        colorize: for `stderr`; None lets loguru decide for the real stderr.
    """
    logger.remove()
    sink: Any = config.log.file or stderr or sys.stderr
    kwargs: dict[str, Any] = {"level": config.log.level.upper(), "backtrace": False,
                              "diagnose": False}
    if config.log.format == "json":
        kwargs["serialize"] = True
    else:
        kwargs["format"] = TEXT_FORMAT
        kwargs["colorize"] = (None if sink is sys.stderr else
                              bool(colorize) if stderr is not None and sink is stderr else False)
    logger.add(sink, **kwargs)


def fail(message: str) -> NoReturn:
    """Stop the command with a one-line error, exit 1."""
    raise CliError(message)


def squash(text: str) -> str:
    """Any message on one line."""
    return " ".join(text.split())


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (an OSError's with its file name)."""
    text = squash(str(exc)) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    return text


class RootGroup(click.Group):
    """The root command: runs with `standalone_mode=False` and turns every error into one line."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.Abort:
            click.echo("Aborted.", err=True)
            code = 1
        except click.UsageError as exc:
            hint = ""
            if exc.ctx is not None:
                hint = f" (try '{exc.ctx.command_path} --help')"
            click.echo(f"Error: {squash(exc.format_message())}{hint}", err=True)
            code = exc.exit_code
        except click.ClickException as exc:
            click.echo(f"Error: {squash(exc.format_message())}", err=True)
            code = exc.exit_code
        except USER_ERRORS as exc:
            if _debug():
                traceback.print_exc()
            click.echo(f"Error: {one_line(exc)}", err=True)
            code = 1
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            code = 130
        except Exception as exc:  # a bug: still one line, the traceback only at DEBUG
            if _debug():
                traceback.print_exc()
                click.echo(f"Error: internal error: {type(exc).__name__}: {one_line(exc)}",
                           err=True)
            else:
                click.echo(f"Error: internal error: {type(exc).__name__}: {one_line(exc)} "
                           "(run with --log-level DEBUG for the traceback)", err=True)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


# The state of the run in progress, for the error handler (which runs after the context is
# gone). Only one command runs per process.
CURRENT: dict[str, AppState] = {}


def _debug() -> bool:
    state = CURRENT.get("state")
    return bool(state and state.debug)
