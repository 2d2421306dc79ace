"""Real runner processes killed with real signals (SIGKILL, SIGTERM)."""
from __future__ import annotations

import signal
import time
from pathlib import Path

from storage.db import connect
from tests.actors.conftest import all_in, job_fields, start_runner, states, worker_count
from actors.testing import wait_for
from tests.factories import make_jobs, make_source


def _jobs(db, count: int) -> list[int]:
    src = make_source(db)
    before = set(states(db))
    make_jobs(db, src.attachment_id, count, "pack")
    return sorted(set(states(db)) - before)


def _markers(workdir: Path, job_id: int) -> list[Path]:
    return sorted(workdir.glob(f"running-{job_id}-*"))


CRASH_CONFIG = {"concurrency": 2, "max_attempts": 3, "stale_after": 1.0, "heartbeat_interval": 0.2,
                "interval": 0.2, "lease_ttl": 1.0}


def test_killing_the_runner_during_one_job_again_and_again_quarantines_that_job(db_url, tmp_path):
    db = connect(db_url)
    ids = _jobs(db, 12)
    poison = ids[0]
    for round_no in range(1, 4):
        proc = start_runner(db_url, tmp_path, f"run{round_no}", hang_job=poison,
                            config=CRASH_CONFIG)
        try:
            assert wait_for(lambda: len(_markers(tmp_path, poison)) == round_no, 20), \
                (tmp_path / f"run{round_no}.log").read_text()
            assert proc.poll() is None  # the process did not exit because of the job
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assert job_fields(db, poison)["attempts"] == round_no
    last = start_runner(db_url, tmp_path, "final", hang_job=poison, config=CRASH_CONFIG)
    try:
        assert wait_for(lambda: states(db, [poison])[poison] == "error", 20), \
            (tmp_path / "final.log").read_text()
        assert wait_for(lambda: all_in(db, "complete", ids[1:]), 20)
        assert last.poll() is None
    finally:
        last.send_signal(signal.SIGTERM)
        assert last.wait(15) == 143
    message = job_fields(db, poison)["error_message"]
    assert "quarantined after 3 attempts" in message
    assert len(_markers(tmp_path, poison)) == 3  # never run a fourth time


def test_sigusr1_dumps_stacks_and_sigterm_releases_the_long_job_within_10s(db_url, tmp_path):
    db = connect(db_url)
    [job] = _jobs(db, 1)
    proc = start_runner(db_url, tmp_path, "run", hang_job=job,
                        config={"concurrency": 2, "shutdown_timeout": 10.0})
    try:
        assert wait_for(lambda: _markers(tmp_path, job), 20), (tmp_path / "run.log").read_text()
        assert wait_for(lambda: worker_count(db) == 2, 10)  # the second may still register
        proc.send_signal(signal.SIGUSR1)  # dumps every thread's stack and goes on
        assert wait_for(lambda: "thread MainThread (daemon=False)" in
                        (tmp_path / "run.log").read_text(), 10)
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)  # reaped, or the ResourceWarning fails a later test
    assert code == 143
    assert elapsed < 10
    assert states(db, [job]) == {job: "ready"}
    assert job_fields(db, job)["worker"] is None
    assert worker_count(db) == 0


def test_second_sigterm_exits_at_once(db_url, tmp_path):
    db = connect(db_url)
    [job] = _jobs(db, 1)
    proc = start_runner(db_url, tmp_path, "run", hang_job=job, stubborn=True,
                        config={"shutdown_timeout": 60.0})
    log = tmp_path / "run.log"
    try:
        assert wait_for(lambda: _markers(tmp_path, job), 20), log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: "stopping (signal)" in log.read_text(), 10)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)  # reaped, or the ResourceWarning fails a later test
    assert code == 143
    assert elapsed < 2.0


def test_two_runner_processes_share_500_jobs_and_run_each_exactly_once(db_url, tmp_path):
    db = connect(db_url)
    ids = _jobs(db, 500)
    config = {"concurrency": 2, "exit_on_complete": True, "stale_after": 60.0}
    procs = [start_runner(db_url, tmp_path, f"run{i}", record=True, config=config)
             for i in range(2)]
    codes = [p.wait(60) for p in procs]
    assert codes == [0, 0], [(tmp_path / f"run{i}.log").read_text()[-3000:] for i in range(2)]
    assert all_in(db, "complete", ids)
    runs = [line.split()[0] for f in tmp_path.glob("ran-*.txt")
            for line in f.read_text().splitlines()]
    assert sorted(map(int, runs)) == ids  # every job exactly once
    assert worker_count(db) == 0


def test_a_restarted_runner_takes_back_at_once_the_jobs_of_a_killed_runner_of_this_host(
        db_url, tmp_path):
    # Regression: the jobs of a SIGKILLed run stayed `processing` until the reaper found its
    # workers stale (5 min), so a restarted `run --exit-on-complete` stopped at once and a
    # DAG built then lacked their files.
    db = connect(db_url)
    [job] = _jobs(db, 1)
    slow_reaper = {"stale_after": 300.0, "interval": 300.0}
    killed = start_runner(db_url, tmp_path, "killed", hang_job=job, config=slow_reaper)
    try:
        assert wait_for(lambda: _markers(tmp_path, job), 20), (tmp_path / "killed.log").read_text()
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
    assert states(db, [job]) == {job: "processing"}
    again = start_runner(db_url, tmp_path, "again",
                         config={**slow_reaper, "exit_on_complete": True})
    try:
        assert again.wait(30) == 0, (tmp_path / "again.log").read_text()
    finally:
        if again.poll() is None:
            again.kill()
            again.wait(10)
    assert states(db, [job]) == {job: "complete"}
