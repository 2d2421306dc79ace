"""The ez-prep progress line: files, bytes, MB/s, pieces, ETA; redrawn on a TTY."""
from __future__ import annotations

import io

import pytest
from loguru import logger

from cli.app import AppState
from cli.ezprep import Progress, ProgressPrinter
from storage import catalog
from storage.models import Job, JobState, SourceAttachment


@pytest.fixture(autouse=True)
def _loguru_reset():
    """A printer on a TTY points loguru at it: put loguru back after each test."""
    yield
    logger.remove()


def status(files=10, total=100_000_000, packed=0, scanning=False, pieces=0):
    prep = catalog.PreparationRow(id=1, name="p", max_size=1, piece_size=256, min_piece_size=0,
                                  no_inline=False, no_dag=False, delete_after_export=False)
    jobs = {"scan": {"processing" if scanning else "complete": 1},
            "pack": {"complete": pieces, "ready": 4 - pieces}}
    return catalog.PreparationStatus(preparation=prep, jobs=jobs, files=files, bytes=total,
                                     packed_bytes=packed, pieces=pieces, root_cids={},
                                     sources=("s",), outputs=())


def test_rate_and_eta_come_from_the_bytes_packed_between_samples():
    progress = Progress(phase="scan+pack", started=0.0)
    progress.line(status(packed=0), now=0.0)
    line = progress.line(status(packed=50_000_000, pieces=2), now=5.0)
    assert "[scan+pack]" in line and "10 files" in line and "2 pieces" in line
    assert "10.0 MB/s" in line
    assert "ETA 0:00:05" in line                      # 50 MB left at 10 MB/s
    assert "pack jobs 2/4" in line


def test_no_eta_while_the_scan_is_still_running():
    progress = Progress(started=0.0)
    progress.line(status(packed=0, scanning=True), now=0.0)
    line = progress.line(status(packed=10_000_000, scanning=True), now=1.0)
    assert "(scanning)" in line and "ETA" not in line


def test_no_eta_until_the_rate_was_measured_over_a_percent_of_the_work():
    # Regression: 13.6 KiB of 784 MiB in the first 5 s gave "ETA 82:20:15".
    progress = Progress(started=0.0)
    progress.line(status(packed=0), now=0.0)
    assert "ETA" not in progress.line(status(packed=13_926), now=5.0)
    assert "ETA" in progress.line(status(packed=1_000_000), now=6.0)


def test_the_final_line_gives_the_average_rate_of_the_whole_run():
    progress = Progress(started=0.0)
    line = progress.line(status(packed=100_000_000, pieces=4), now=20.0, final=True)
    assert "5.0 MB/s" in line and "elapsed 0:00:20" in line


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _prep(db, tmp_path):
    catalog.create_storage(db, "s", str(tmp_path))
    catalog.create_preparation(db, "p", ["s"], max_size=1 << 20)
    Job.create(type="pack", state=JobState.COMPLETE, attachment=SourceAttachment.get(),
               total_bytes=1000)


def test_a_tty_gets_one_redrawn_line_and_a_pipe_gets_plain_lines(db, db_url, tmp_path):
    _prep(db, tmp_path)
    state = AppState(overrides={"database.url": db_url})
    state._db = db
    tty = FakeTty()
    printer = ProgressPrinter(state, "p", tty)
    printer.draw()
    printer.draw()
    assert tty.getvalue().count("\r\x1b[K") == 2 and "\n" not in tty.getvalue()
    pipe = io.StringIO()
    printer = ProgressPrinter(state, "p", pipe)
    printer.draw()
    printer.draw()
    lines = pipe.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("[scan]  0 files  1000 B / 0 B")


class StopAfterFirstLine(io.StringIO):
    """A pipe that stops its printer once the first line is written."""

    printer: ProgressPrinter | None = None

    def write(self, text: str) -> int:
        n = super().write(text)
        if self.printer is not None:
            self.printer.stop_event.set()
        return n


def test_the_first_plain_line_already_has_a_rate(db, db_url, tmp_path, monkeypatch):
    # Regression: the first line on a pipe (5 s in) had no earlier sample and read 0.0 MB/s.
    import cli.ezprep

    _prep(db, tmp_path)
    running = Job.create(type="pack", state=JobState.PROCESSING, attachment=SourceAttachment.get(),
                         total_bytes=100_000_000, progress_bytes=0)
    monkeypatch.setattr(cli.ezprep, "PLAIN_EVERY_S", 0.5)
    state = AppState(overrides={"database.url": db_url})
    state._db = db
    pipe = StopAfterFirstLine()

    class Printer(ProgressPrinter):
        calls = 0

        def _status(self):
            st = super()._status()
            Printer.calls += 1
            if Printer.calls == 1:   # after the baseline, 50 MB get packed
                Job.update(progress_bytes=50_000_000).where(Job.id == running.id).execute()
            return st

    printer = Printer(state, "p", pipe)
    pipe.printer = printer
    printer.run()                                         # in this thread, until the first line
    (line,) = pipe.getvalue().splitlines()
    assert " 0.0 MB/s" not in line, line
    assert "MB/s" in line


def test_on_a_tty_log_lines_go_above_the_progress_line_not_through_it(db, db_url, tmp_path):
    # Regression: a log line was written right after the progress line (which ends without a
    # newline), so both ran together on one screen line.
    _prep(db, tmp_path)
    state = AppState(overrides={"database.url": db_url, "log.level": "INFO"})
    state._db = db
    tty = FakeTty()
    printer = ProgressPrinter(state, "p", tty)
    printer.draw()
    logger.info("claimed pack job 7")
    out = tty.getvalue()
    progress = printer.last_line
    assert out.startswith("\r\x1b[K" + progress + "\r\x1b[K")   # the line is cleared first
    after = out[len("\r\x1b[K" + progress + "\r\x1b[K"):]
    log_line, redrawn = after.split("\n", 1)
    assert log_line.endswith("claimed pack job 7")
    assert redrawn == progress                                      # and drawn again below
    printer.finish()
    logger.info("after the end")
    tail = tty.getvalue().rsplit(printer.last_line + "\n", 1)[1]   # below the final line
    assert tail.startswith("\r\x1b[K") and tail.endswith("after the end\n")
    assert printer.last_line not in tail                            # not redrawn any more
