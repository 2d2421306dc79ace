"""`ez-prep`: one directory in, CAR pieces and a root CID out, in this process.

It creates a preparation, runs the worker pool with exit-on-complete until scan and pack are
done, starts daggen, runs the pool again, then prints the pieces and the dataset's root CID.
A progress thread reads the jobs' progress columns and redraws one status line on a TTY, or
prints a plain line every few seconds otherwise (both on stderr; results go to stdout).
"""
from __future__ import annotations

import os
import shlex
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TextIO

import click
import pykka

from actors.localrescue import rescue_dead_local_workers
from cli import resume
from cli.app import AppState, fail, setup_logging
from cli.commands import emit_pieces, piece_document, resolve_storage
from cli.layout import check_layout
from cli.output import cid_str, emit_json, human_size
from cli.params import SIZE
from storage import catalog
from storage.models import JobState, JobType

PLAIN_EVERY_S = 5.0
TTY_EVERY_S = 0.5


@dataclass
class Progress:
    """Turns successive status snapshots into one line: files, bytes, MB/s, pieces, ETA."""

    phase: str = JobType.SCAN
    started: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, int]] = field(default_factory=list)

    def sample(self, st: catalog.PreparationStatus, now: float | None = None) -> int:
        """Record the bytes done at `now` (the rate is measured between samples)."""
        now = time.monotonic() if now is None else now
        done = min(st.packed_bytes, st.bytes) if st.bytes else st.packed_bytes
        self.samples = [(t, b) for t, b in self.samples if now - t <= 10.0] + [(now, done)]
        return done

    def line(self, st: catalog.PreparationStatus, now: float | None = None,
             final: bool = False) -> str:
        """One progress line; `final` gives the average rate of the whole run."""
        now = time.monotonic() if now is None else now
        done = self.sample(st, now)
        t0, b0 = self.samples[0]
        rate = (done - b0) / (now - t0) if now - t0 > 0.2 else 0.0
        if final:
            rate = done / max(now - self.started, 1e-3)
        pack = st.jobs.get(JobType.PACK, {})
        scanning = any(st.jobs.get(JobType.SCAN, {}).get(s) for s in
                       (JobState.READY, JobState.PROCESSING))
        parts = [f"[{self.phase}]", f"{st.files} files",
                 f"{human_size(done)} / {human_size(st.bytes)}" + (" (scanning)" if scanning else ""),
                 f"{rate / 1e6:.1f} MB/s", f"{st.pieces} pieces",
                 f"pack jobs {pack.get(JobState.COMPLETE, 0)}/{sum(pack.values())}"]
        # An ETA from a sliver of the work (the first KiB of a long pack) is noise.
        measured = (done - b0) * 100 >= st.bytes
        if not scanning and rate > 0 and st.bytes > done and measured:
            parts.append(f"ETA {_clock(int((st.bytes - done) / rate))}")
        parts.append(f"elapsed {_clock(int(now - self.started))}")
        return "  ".join(parts)


def _clock(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


class ProgressPrinter(threading.Thread):
    """Polls the preparation's status and prints progress lines until stopped."""

    def __init__(self, state: AppState, prep_name: str, stream: TextIO) -> None:
        super().__init__(name="ez-prep-progress", daemon=True)
        self.db, self.prep_name, self.stream = state.db(), prep_name, stream
        self.tty = stream.isatty()
        self.progress = Progress()
        self.stop_event = threading.Event()
        self.last_line = ""
        self.lock = threading.Lock()    # one writer at a time: progress or a log line
        self.drawing = self.tty
        if self.tty:
            # Log lines would else continue the progress line (it has no newline): each one
            # clears it, is written on its own, and the progress line is drawn again below.
            setup_logging(state.config(), stderr=self._log_line, colorize=True)

    def _log_line(self, message: str) -> None:
        with self.lock:
            self.stream.write("\r\x1b[K" + message)
            if self.drawing and self.last_line:
                self.stream.write(self.last_line)
            self.stream.flush()

    def run(self) -> None:
        every = TTY_EVERY_S if self.tty else PLAIN_EVERY_S
        # A first sample, not drawn: else the first plain line (5 s in) has nothing to
        # measure its rate against and shows 0.0 MB/s.
        st = self._status()
        if st is not None:
            self.progress.sample(st)
        while not self.stop_event.wait(every):
            self.draw()

    def _status(self) -> catalog.PreparationStatus | None:
        try:
            # Only the models are used: they follow whichever database is current.
            return catalog.preparation_status(self.db, self.prep_name)
        except Exception:  # a busy database only delays the display
            return None

    def draw(self, final: bool = False) -> None:
        st = self._status()
        if st is None:
            return
        with self.lock:
            self.last_line = self.progress.line(st, final=final)
            if self.tty:
                self.stream.write("\r\x1b[K" + self.last_line)
            else:
                self.stream.write(self.last_line + "\n")
            self.stream.flush()

    def finish(self) -> None:
        self.stop_event.set()
        if self.is_alive():
            self.join(timeout=5)
        self.draw(final=True)
        if self.tty:
            with self.lock:
                self.drawing = False        # later log lines start below the final line
                self.stream.write("\n")
                self.stream.flush()


def _run_until_done(state: AppState, concurrency: int, printer: ProgressPrinter,
                    phase: str) -> None:
    """Run the pool on one job type until no job of it is left.

    One type per run: with exit-on-complete a worker that finds nothing to claim stops, so
    a pool started while only the scan job exists would pack with a single worker.
    """
    from actors.pool import run_pool

    printer.progress.phase = phase
    config = state.config(worker__concurrency=concurrency, worker__exit_on_complete=True,
                          worker__min_interval=0.2, worker__max_interval=1.0,
                          worker__enable_scan=phase == JobType.SCAN,
                          worker__enable_pack=phase == JobType.PACK,
                          worker__enable_dag=phase == JobType.DAGGEN)
    # run_pool connects its own database, which re-points every model at it; ours is closed
    # first and opened again after, so that this thread's transactions and queries use one
    # connection (else a transaction here would wait on a query of our own: "locked").
    state.close()
    try:
        code = run_pool(config)
    finally:
        # run_pool may return while its last actors still stop (the reaper releasing its
        # lease); the next run_pool would re-point the models under them. Wait for them.
        pykka.ActorRegistry.stop_all(block=True, timeout=30)
        state.db()
    if code:
        raise click.exceptions.Exit(code)


def _failed_jobs(state: AppState, prep_name: str) -> list[catalog.JobListRow]:
    return catalog.list_jobs(state.db(), preparation=prep_name, state=JobState.ERROR)


@click.command("ez-prep")
@click.argument("source", type=click.Path(file_okay=False))
@click.option("--output", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Directory for the CAR files (created if missing).")
@click.option("--max-size", type=SIZE, default="31.5GiB", show_default=True,
              help="Largest CAR of one pack job.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Workers (default: the number of CPUs).")
@click.option("--name", help="Preparation name (default: the source directory name + suffix). "
              "An existing preparation of the same source and output is resumed.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def ez_prep(state: AppState, source: str, output: str, max_size: int, concurrency: int | None,
            name: str | None, as_json: bool) -> None:
    """Prepare directory SOURCE into CAR pieces in DIR, all in this process.

    Run it again with the same --name to resume an interrupted run.
    """
    if not os.path.isdir(source):
        fail(f"source {source!r} is not a directory")
    source = os.path.abspath(source)
    name = name or f"{os.path.basename(source.rstrip(os.sep)) or 'root'}-{uuid.uuid4().hex[:6]}"
    concurrency = concurrency or min(os.cpu_count() or 1, 8)
    # Before the database is opened: refused, it leaves no database file behind.
    check_layout(state.config().database.url, [source], [os.path.abspath(output)])
    db = state.db()
    prep = resume.find_resumable(db, name, source, output)
    if prep is None:
        prep = catalog.create_preparation(db, name,
                                          [resolve_storage(state, source, output=False)],
                                          [resolve_storage(state, output, output=True)],
                                          max_size=max_size)
        click.echo(f"preparation {prep.name} ({prep.id}) in {db.url}", err=True)
    else:
        rescued = rescue_dead_local_workers(db, prep.name)
        resume.make_runnable(db, prep.name)
        click.echo(f"resuming preparation {prep.name} ({prep.id}) in {db.url}"
                   + (f"; {rescued} job(s) of a killed run given back" if rescued else ""),
                   err=True)
    printer = ProgressPrinter(state, prep.name, sys.stderr)
    printer.start()
    interrupted = False
    try:
        _run_phases(state, prep.name, concurrency, printer)
    except (click.exceptions.Exit, KeyboardInterrupt) as exc:
        interrupted = isinstance(exc, KeyboardInterrupt) or exc.exit_code in (130, 143)
        raise
    finally:
        printer.finish()
        if interrupted:
            again = " ".join(shlex.quote(a) for a in (source, "--output", output, "--name",
                                                      prep.name))
            click.echo(f"interrupted: run `{click.get_current_context().command_path} {again}` "
                       "again to resume", err=True)
    db = state.db()
    st = catalog.preparation_status(db, prep.name)
    pieces = catalog.list_pieces(db, prep.name)
    root = cid_str(next(iter(st.root_cids.values()), None))
    if as_json:
        emit_json({"preparation": prep.name, "id": prep.id, "root_cid": root,
                   "files": st.files, "bytes": st.bytes,
                   "pieces": [piece_document(p) for p in pieces]})
        return
    emit_pieces(pieces)
    click.echo(f"root CID: {root}")


def _run_phases(state: AppState, prep_name: str, concurrency: int,
                printer: ProgressPrinter) -> None:
    """Scan, pack, daggen, each with its own pool run; stop at the first failed job."""
    for phase in (JobType.SCAN, JobType.PACK, JobType.DAGGEN):
        if phase != JobType.PACK:
            resume.start_phase(state.db(), prep_name, phase)
        _run_until_done(state, 1 if phase == JobType.SCAN else concurrency, printer, phase)
        failed = _failed_jobs(state, prep_name)
        if failed:
            fail(f"{len(failed)} job(s) failed, first: job {failed[0].id} "
                 f"({failed[0].type}): {failed[0].error_message}")
        if phase == JobType.SCAN and not catalog.preparation_status(state.db(), prep_name).files:
            fail(f"preparation {prep_name}: the source holds no file to prepare")
        if phase == JobType.PACK:
            # A DAG built now would silently lack these files: stop instead.
            held = resume.unfinished_packs(state.db(), prep_name)
            if held:
                fail(f"{len(held)} pack job(s) not finished (held by another process or "
                     f"paused: {', '.join(str(j.id) for j in held[:10])}); the DAG is not "
                     f"built. Run ez-prep with --name {prep_name} again once they are done")
