"""The reaper actor in a running pool: rescue, orphans and stale temporary files."""
from __future__ import annotations

import datetime as dt
import os
import time

from actors.testing import PoolHarness, Script, test_config
from storage.db import connect
from storage.models import utcnow
from tests.actors.conftest import all_in, job_fields, worker_count
from tests.factories import make_job, make_source, make_storage, make_worker


def test_reaper_rescues_a_dead_workers_job_and_the_pool_completes_it(db_url):
    db = connect(db_url)
    src = make_source(db)
    dead = make_worker(db, last_heartbeat=utcnow() - dt.timedelta(minutes=10))
    job = make_job(db, src.attachment_id, "pack", state="processing", worker_id=dead,
                   attempts=1)
    with PoolHarness(test_config(db_url, concurrency=1), Script(), db=db) as pool:
        assert pool.wait_for(lambda: all_in(db, "complete", [job]), 10)
    assert job_fields(db, job)["attempts"] == 2
    assert worker_count(db) == 0  # the dead row was deleted, ours deregistered


def test_reaper_removes_stale_temp_files_and_keeps_fresh_ones(db_url, tmp_path):
    db = connect(db_url)
    out = tmp_path / "out"
    out.mkdir()
    make_storage(db, path=str(out))
    stale = out / ".pieceworks-7-dead.car.tmp"
    fresh = out / ".pieceworks-8-live.car.tmp"
    other = out / "keep.car"
    for f in (stale, fresh, other):
        f.write_bytes(b"x")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    config = test_config(db_url, concurrency=1, interval=0.05, stale_after=60.0)
    with PoolHarness(config, Script(), db=db) as pool:
        assert pool.wait_for(lambda: not stale.exists(), 5)
        assert pool.wait_for(lambda: pool.signals.count("reaped") >= 2, 5)
    assert fresh.exists() and other.exists()
