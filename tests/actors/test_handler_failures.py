"""Handlers that raise: jobs end in `error` with message and traceback, the pool goes on."""
from __future__ import annotations

from actors.testing import (PoolHarness, Script, keyboard_interrupt, raise_error, system_exit,
                            test_config)
from storage.db import connect
from tests.actors.conftest import all_in, job_fields, states
from tests.factories import make_jobs, make_source


def _jobs(db, count: int) -> list[int]:
    src = make_source(db)
    before = set(states(db))
    make_jobs(db, src.attachment_id, count, "pack")
    return sorted(set(states(db)) - before)


def test_raising_handler_fails_the_job_with_message_and_traceback_and_worker_goes_on(db_url):
    db = connect(db_url)
    ids = _jobs(db, 4)
    script = Script().on(ids[0], raise_error("disk on fire"))
    with PoolHarness(test_config(db_url, concurrency=1), script, db=db) as pool:
        assert pool.wait_for(lambda: all_in(db, "complete", ids[1:]), 10)
        assert states(db, [ids[0]]) == {ids[0]: "error"}
        assert pool.signals.count("restarted") == 0
    failed = job_fields(db, ids[0])
    assert failed["error_message"] == "RuntimeError: disk on fire"
    assert "Traceback" in failed["error_stack_trace"]
    assert "disk on fire" in failed["error_stack_trace"]
    assert failed["worker"] is None
    assert pool.exit_code == 0


def test_system_exit_and_keyboard_interrupt_in_handlers_are_contained(db_url):
    db = connect(db_url)
    ids = _jobs(db, 6)
    script = Script().on(ids[0], system_exit(3)).on(ids[1], keyboard_interrupt())
    with PoolHarness(test_config(db_url, concurrency=2), script, db=db) as pool:
        assert pool.wait_for(lambda: all_in(db, "complete", ids[2:]), 10)
        assert pool.wait_for(lambda: all_in(db, "error", ids[:2]), 5)
        assert pool.running
        assert pool.signals.count("restarted") == 0
        assert pool.signals.count("escalated") == 0
    assert job_fields(db, ids[0])["error_message"] == "SystemExit: 3"
    assert job_fields(db, ids[1])["error_message"] == "KeyboardInterrupt"
    assert "Traceback" in job_fields(db, ids[1])["error_stack_trace"]
    assert pool.exit_code == 0
