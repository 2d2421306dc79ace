"""pieceworks command line: `python runner.py [GLOBAL OPTIONS] COMMAND ...`.

With no command it runs the worker pool, like `runner.py run`. The commands live in `cli/`;
this module declares the root group, its global options and `run`, and `main()`, the
console-script entry point.
"""
from __future__ import annotations

import os

import click

from cli.app import CURRENT, AppState, RootGroup
from cli.commands import db_group, job_group, prep_group, storage_group, worker_group
from cli.ezprep import ez_prep

LOG_LEVELS = click.Choice(["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"],
                          case_sensitive=False)


def _version() -> str:
    """The installed distribution's version (a bare checkout has none installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pieceworks")
    except PackageNotFoundError:
        return "unknown (not installed)"


@click.group(cls=RootGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=_version(), prog_name="pieceworks", message="%(prog)s %(version)s")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="TOML config file (default: ./config.toml if present).")
@click.option("--database", metavar="URL",
              help="Database URL, e.g. sqlite:///pieceworks.db or postgresql://u@host/db.")
@click.option("--log-level", type=LOG_LEVELS, help="Log level (DEBUG also prints tracebacks).")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Log line format.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, database: str | None,
        log_level: str | None, log_format: str | None) -> None:
    """pieceworks: scan datasets, pack them into CAR pieces with piece CIDs, build the DAG.

    With no command, runs the worker pool (same as `run`).
    """
    state = AppState(config_path=config_path, env=dict(os.environ),
                     overrides={"database.url": database,
                                "log.level": log_level.upper() if log_level else None,
                                "log.format": log_format})
    state.debug = (log_level or "").upper() in ("DEBUG", "TRACE")
    CURRENT["state"] = state
    ctx.obj = state
    ctx.call_on_close(state.close)
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@cli.command("run")
@click.option("--concurrency", type=click.IntRange(min=1), help="Workers in this process.")
@click.option("--exit-on-complete", is_flag=True, default=None,
              help="Exit once no job is left to claim.")
@click.option("--exit-on-error", is_flag=True, default=None,
              help="Exit non-zero on the first failed job.")
@click.option("--no-scan", is_flag=True, help="Do not claim scan jobs.")
@click.option("--no-pack", is_flag=True, help="Do not claim pack jobs.")
@click.option("--no-dag", is_flag=True, help="Do not claim daggen jobs.")
@click.option("--no-reaper", is_flag=True, help="Never run the reaper in this process.")
@click.pass_obj
def run(state: AppState, concurrency: int | None = None, exit_on_complete: bool | None = None,
        exit_on_error: bool | None = None, no_scan: bool = False, no_pack: bool = False,
        no_dag: bool = False, no_reaper: bool = False) -> None:
    """Run the worker pool until stopped (SIGINT/SIGTERM release running jobs)."""
    from actors.pool import run_pool

    state.config()  # logging first, with the global options
    config = state.config(worker__concurrency=concurrency,
                          worker__exit_on_complete=exit_on_complete,
                          worker__exit_on_error=exit_on_error,
                          worker__enable_scan=False if no_scan else None,
                          worker__enable_pack=False if no_pack else None,
                          worker__enable_dag=False if no_dag else None,
                          reaper__enabled=False if no_reaper else None)
    state.db()  # schema created or checked, and a bad URL reported, before the pool starts
    state.close()
    code = run_pool(config)
    if code:
        raise click.exceptions.Exit(code)


cli.add_command(db_group)
cli.add_command(storage_group)
cli.add_command(prep_group)
cli.add_command(job_group)
cli.add_command(worker_group)
cli.add_command(ez_prep)


def main() -> None:
    """Console-script entry point (`pieceworks ...`)."""
    cli(prog_name="pieceworks")


if __name__ == "__main__":
    cli(prog_name="runner.py")
