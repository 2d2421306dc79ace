"""A CAR takes its `<pieceCID>.car` name only inside the completion that won.

So a job that loses its compare-and-set can never remove a CAR that another job's car
row references or is about to reference, no temp file survives a failure, a cancel or a
lost compare-and-set, and a crash between the rename and the commit leaves a complete CAR
under its piece CID name and nothing else.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import storage.packing
from dataprep.context import JobContext
from dataprep.errors import FileModified, JobCancelled
from dataprep.handlers import HANDLERS
from storage.jobs import complete_job, load_job
from storage.models import Car, File, Job, JobState, JobType
from tests.dataprep.conftest import mark_processing, run_job, write_tree
from tests.factories import make_job, make_output, make_source, make_storage

REPO = Path(__file__).resolve().parents[2]


def _scan(db, src) -> int:
    assert run_job(db, make_job(db, src.attachment_id, JobType.SCAN)).completed
    (pack,) = Job.select(Job.id).where((Job.attachment == src.attachment_id)
                                       & (Job.type == JobType.PACK))
    return pack.id


def _run_handler(db, job_id: int):
    """Claim the job as a fresh worker and run its handler: (worker id, outcome)."""
    worker = mark_processing(db, job_id)
    return worker, HANDLERS["pack"](load_job(db, job_id), JobContext(db=db, worker_id=worker))


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def same_piece_twice(db, tmp_path):
    """Two preparations with identical content and one shared output directory: their
    pack jobs produce the same piece. Returns (output dir, [pack job id, pack job id])."""
    out = tmp_path / "shared-out"
    out.mkdir()
    data = {"same.bin": os.urandom(300_000)}
    jobs = []
    for i in range(2):
        root = write_tree(tmp_path / f"src{i}", data)
        src = make_source(db, source_path=str(root))
        make_output(db, src.preparation_id, make_storage(db, path=str(out)))
        jobs.append(_scan(db, src))
    return str(out), jobs


def test_a_lost_compare_and_set_never_removes_the_car_the_winner_is_about_to_reference(
        db, same_piece_twice):
    out, (winner_id, loser_id) = same_piece_twice
    winner_worker, winner = _run_handler(db, winner_id)
    loser_worker, loser = _run_handler(db, loser_id)
    Job.update(state=JobState.PAUSED).where(Job.id == loser_id).execute()  # a user paused it
    assert not complete_job(db, loser_id, loser_worker, loser.apply)
    seen: dict[str, object] = {}

    def loser_discards() -> None:
        try:
            loser.discard()
        finally:
            db.close()

    def apply_then_let_the_loser_discard() -> None:
        winner.apply()
        # The winner's transaction is open, its car row not yet visible to others: the
        # loser, on another connection, discards now.
        thread = threading.Thread(target=loser_discards)
        thread.start()
        thread.join(30)
        seen["during"] = sorted(os.listdir(out))

    assert complete_job(db, winner_id, winner_worker, apply_then_let_the_loser_discard)
    car = Car.get()
    assert seen["during"] == [car.storage_path]
    assert os.listdir(out) == [car.storage_path]
    assert os.path.getsize(os.path.join(out, car.storage_path)) == car.file_size


def test_a_second_job_with_the_same_piece_keeps_the_file_already_in_place(
        db, same_piece_twice):
    out, (first_id, second_id) = same_piece_twice
    assert run_job(db, first_id).completed
    name = Car.get().storage_path
    inode = os.stat(os.path.join(out, name)).st_ino
    assert run_job(db, second_id).completed
    assert [c.storage_path for c in Car.select()] == [name, name]
    assert os.listdir(out) == [name]
    assert os.stat(os.path.join(out, name)).st_ino == inode  # dropped ours, kept theirs


def _fail_while_reading(db, job_id: int) -> None:
    path = File.get().path
    root = load_job(db, job_id).attachment.source.path

    def grow(done: int, total: int) -> None:
        with open(os.path.join(root, path), "ab") as f:
            f.write(b"x")

    with pytest.raises(FileModified):
        run_job(db, job_id, progress=grow)


def _cancel(db, job_id: int) -> None:
    cancel = threading.Event()
    with pytest.raises(JobCancelled):
        run_job(db, job_id, cancel=cancel, progress=lambda done, total: cancel.set())


def _lose_the_compare_and_set(db, job_id: int) -> None:
    _, outcome = _run_handler(db, job_id)
    assert not complete_job(db, job_id, "someone-else", outcome.apply)
    outcome.discard()


def _fail_in_apply(db, job_id: int, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("the results cannot be written")

    monkeypatch.setattr(storage.packing, "write_pack_result", broken)
    worker, outcome = _run_handler(db, job_id)
    with pytest.raises(RuntimeError):
        complete_job(db, job_id, worker, outcome.apply)
    outcome.discard()  # what the claimer does when the completion raised


@pytest.mark.parametrize("how", ["read failure", "cancel", "lost CAS", "apply failure"])
def test_no_temp_file_and_no_car_survives_a_failure_a_cancel_or_a_lost_cas(
        db, make_src, monkeypatch, how):
    src, _, outs = make_src({"big.bin": os.urandom(3 << 20)}, outputs=1)
    job_id = _scan(db, src)
    if how == "read failure":
        _fail_while_reading(db, job_id)
    elif how == "cancel":
        _cancel(db, job_id)
    elif how == "lost CAS":
        _lose_the_compare_and_set(db, job_id)
    else:
        _fail_in_apply(db, job_id, monkeypatch)
    assert os.listdir(outs[0]) == []
    assert Car.select().count() == 0


_CRASH_AFTER_APPLY = """
import os, sys
from dataprep.context import JobContext
from dataprep.handlers import HANDLERS
from storage.db import connect
from storage.jobs import complete_job, load_job

db = connect(sys.argv[1])
job_id, worker = int(sys.argv[2]), sys.argv[3]
outcome = HANDLERS["pack"](load_job(db, job_id), JobContext(db=db, worker_id=worker))

def apply_then_die():
    outcome.apply()
    os._exit(3)  # killed after the rename, before the transaction commits

complete_job(db, job_id, worker, apply_then_die)
"""


def test_a_crash_between_rename_and_commit_leaves_only_a_complete_car(
        db, db_url, make_src):
    src, _, outs = make_src({"a.bin": os.urandom(2 << 20), "b.txt": b"b"}, outputs=1)
    job_id = _scan(db, src)
    worker = mark_processing(db, job_id)
    crashed = subprocess.run([sys.executable, "-c", _CRASH_AFTER_APPLY, db_url, str(job_id),
                              worker], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert crashed.returncode == 3, crashed.stderr
    assert Job.get_by_id(job_id).state == JobState.PROCESSING  # nothing was committed
    assert Car.select().count() == 0
    (left,) = os.listdir(outs[0])
    assert left.endswith(".car") and not left.startswith(".")
    digest = _sha(os.path.join(outs[0], left))
    # The job runs again (as after the reaper's rescue) and finds its CAR already in place.
    assert run_job(db, job_id).completed
    car = Car.get()
    assert os.listdir(outs[0]) == [left] == [car.storage_path]
    assert _sha(os.path.join(outs[0], left)) == digest
    assert os.path.getsize(os.path.join(outs[0], left)) == car.file_size
