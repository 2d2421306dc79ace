"""Supervision: a crashed worker is restarted under a new id; a crash storm escalates."""
from __future__ import annotations

from actors.testing import Faults, PoolHarness, Script, test_config
from storage.db import connect
from tests.actors.conftest import all_in, job_fields, states, worker_count
from tests.factories import make_jobs, make_source


def _jobs(db, count: int) -> list[int]:
    src = make_source(db)
    before = set(states(db))
    make_jobs(db, src.attachment_id, count, "pack")
    return sorted(set(states(db)) - before)


def test_crashed_worker_restarts_under_new_id_and_its_job_is_rescued_and_completed(db_url):
    db = connect(db_url)
    ids = _jobs(db, 3)
    faults = Faults(crash_jobs={ids[0]})
    with PoolHarness(test_config(db_url, concurrency=1), Script(), db=db, faults=faults) as pool:
        assert pool.wait_for(lambda: all_in(db, "complete", ids), 15)
        registered = pool.signals.notes("registered")
        assert pool.signals.count("restarted", name="worker-0") == 1
        assert pool.signals.count("escalated") == 0
    ids_seen = [n.data["worker_id"] for n in registered if n.data["name"] == "worker-0"]
    assert len(ids_seen) == 2 and ids_seen[0] != ids_seen[1]
    claims = [n.data["worker_id"] for n in pool.signals.notes("claimed")
              if n.data["job_id"] == ids[0]]
    assert claims[0] == ids_seen[0] and claims[-1] == ids_seen[1]
    assert job_fields(db, ids[0])["attempts"] == 2  # the crashed run counted
    assert pool.exit_code == 0
    assert worker_count(db) == 0


def test_crash_storm_beyond_budget_escalates_releases_jobs_and_exits_nonzero(db_url):
    db = connect(db_url)
    ids = _jobs(db, 4)
    config = test_config(db_url, concurrency=2, max_restarts=2, restart_window=60.0,
                         stale_after=30.0)
    pool = PoolHarness(config, Script(), db=db, faults=Faults(crash_every=True)).start()
    assert pool.join(15) == 1
    assert pool.signals.count("escalated") == 1
    assert pool.signals.count("restarted") == 2
    assert all_in(db, "ready", ids)
    assert all(job_fields(db, i)["worker"] is None for i in ids)
    assert worker_count(db) == 0
