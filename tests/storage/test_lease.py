"""The named lease: acquire, renew, expire, release; under contention from threads and processes."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from pathlib import Path

from storage.lease import acquire_lease, lease_holder, release_lease
from tests.storage.lease_contender import FIXED_NOW

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2030, 1, 1)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_a_free_lease_is_acquired_and_then_refused_to_others(db):
    assert acquire_lease(db, "reaper", "a", 30, now=at(0))
    assert not acquire_lease(db, "reaper", "b", 30, now=at(1))
    assert lease_holder(db, "reaper", now=at(1)) == "a"


def test_the_holder_renews_and_moves_the_expiry_forward(db):
    assert acquire_lease(db, "reaper", "a", 30, now=at(0))
    assert acquire_lease(db, "reaper", "a", 30, now=at(25))
    assert not acquire_lease(db, "reaper", "b", 30, now=at(40))   # would have expired at 30
    assert lease_holder(db, "reaper", now=at(54)) == "a"


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_renew(db):
    assert acquire_lease(db, "reaper", "a", 30, now=at(0))
    assert not acquire_lease(db, "reaper", "b", 30, now=at(29.999))  # just inside
    assert acquire_lease(db, "reaper", "b", 30, now=at(30))          # just expired
    assert not acquire_lease(db, "reaper", "a", 30, now=at(31))
    assert lease_holder(db, "reaper", now=at(31)) == "b"
    assert lease_holder(db, "reaper", now=at(61)) is None


def test_only_the_holder_can_release(db):
    assert acquire_lease(db, "reaper", "a", 30, now=at(0))
    assert not release_lease(db, "reaper", "b")
    assert release_lease(db, "reaper", "a")
    assert lease_holder(db, "reaper", now=at(1)) is None
    assert acquire_lease(db, "reaper", "b", 30, now=at(1))


def test_leases_of_different_names_are_independent(db):
    assert acquire_lease(db, "reaper", "a", 30, now=at(0))
    assert acquire_lease(db, "other", "b", 30, now=at(0))


def test_threads_contending_for_a_lease_never_both_hold_it(db):
    wins: dict[str, int] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def contend(holder: str) -> None:
        try:
            barrier.wait(10)
            wins[holder] = sum(acquire_lease(db, "reaper", holder, 60, now=at(0))
                               for _ in range(25))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=contend, args=(f"t{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    winners = [h for h, n in wins.items() if n]
    assert len(winners) == 1 and wins[winners[0]] == 25


def test_processes_contending_for_a_lease_never_both_hold_it(db, db_url):
    procs = [subprocess.Popen([sys.executable, "-m", "tests.storage.lease_contender", db_url,
                               "reaper", "40"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        holder, won = out.split()
        results.append((holder, int(won)))
    winners = [(h, n) for h, n in results if n]
    assert len(winners) == 1 and winners[0][1] == 40
    assert lease_holder(db, "reaper", now=FIXED_NOW) == winners[0][0]
