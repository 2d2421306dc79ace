"""A source file that changes or vanishes after its scan never blocks its pack job.

Changed before its range is read: the range is skipped with a warning, the job packs
the rest, and a rescan records and packs the new version. Changed while it is read: the
bytes already streamed cannot be taken back, so the run fails with `FileModified`, a
`TransientError` (the worker retries it later), and the next run skips the file.
"""
from __future__ import annotations

import dataclasses
import os
import threading

import pytest

from dataprep.dirstate import DirectoryState
from dataprep.errors import FileModified, NoContent, TransientError
from dataprep.unixfs import file_dag_from_chunks
from storage.models import Car, CarBlock, Directory, File, FileRange, Job, JobState, JobType
from tests.dataprep.conftest import run_job, set_client_config
from tests.dataprep.test_bad_input import change_file
from tests.factories import make_job

NEW_CONTENT = {"modified": b"BBBBBB", "grown": b"bbbbbbmore", "truncated": b"b"}


def _scan(db, src) -> list[int]:
    """Run a scan; the ids of the pack jobs it left ready."""
    assert run_job(db, make_job(db, src.attachment_id, JobType.SCAN)).completed
    return [j.id for j in Job.select(Job.id).where(
        (Job.type == JobType.PACK) & (Job.state == JobState.READY)).order_by(Job.id)]


def _entries(directory_id: int) -> dict[str, bytes]:
    data = Directory.get_by_id(directory_id).data
    return {e.name: e.cid for e in DirectoryState.from_bytes(data).directory} if data else {}


def _cid_of(content: bytes) -> bytes:
    return file_dag_from_chunks([content])[0].root_cid


def _temp_files(out: str) -> list[str]:
    return [n for n in os.listdir(out) if n.endswith(".car.tmp")]


@pytest.mark.parametrize("change,skip_inaccessible", [
    ("modified", False), ("grown", False), ("truncated", False), ("deleted", False),
    ("deleted", True)])
def test_a_file_changed_before_its_pack_is_left_out_and_its_rescan_packs_the_new_version(
        db, make_src, log_lines, change, skip_inaccessible):
    src, root, outs = make_src({"a.txt": b"aaaa", "sub/b.txt": b"bbbbbb", "sub/c.txt": b"cc"},
                               outputs=1)
    if skip_inaccessible:
        set_client_config(db, src.storage_id, {"skip_inaccessible": True})
    (pack_id,) = _scan(db, src)
    target = root / "sub" / "b.txt"
    change_file(target, change)
    assert run_job(db, pack_id).completed
    assert any("skipped: sub/b.txt (scan again to pack its new version)" in m
               for m in log_lines)
    old = File.get(File.path == "sub/b.txt")
    assert old.cid is None
    assert FileRange.get(FileRange.file == old).cid is None
    assert Car.get().num_of_files == 2
    sub_id = Directory.get(Directory.name == "sub").id
    # The other files are packed and in the directory DAG; the changed one is not.
    assert _entries(src.root_directory_id).keys() == {"a.txt", "sub"}
    assert _entries(sub_id) == {"c.txt": _cid_of(b"cc")}
    assert _entries(src.root_directory_id)["sub"] == Directory.get_by_id(sub_id).cid

    new_jobs = _scan(db, src)
    if change == "deleted":
        assert new_jobs == []
        assert File.select().where(File.path == "sub/b.txt").count() == 1
        return
    (repack_id,) = new_jobs  # only the new version: the unchanged files are known already
    assert [r.file.path for r in FileRange.select().where(FileRange.job == repack_id)] \
        == ["sub/b.txt"]
    assert run_job(db, repack_id).completed
    content = target.read_bytes()
    assert content == NEW_CONTENT[change]
    versions = list(File.select().where(File.path == "sub/b.txt").order_by(File.id))
    assert [v.cid for v in versions] == [None, _cid_of(content)]
    assert _entries(sub_id) == {"b.txt": _cid_of(content), "c.txt": _cid_of(b"cc")}
    assert _entries(src.root_directory_id)["sub"] == Directory.get_by_id(sub_id).cid
    assert _temp_files(outs[0]) == []


def test_a_pack_whose_every_file_changed_fails_naming_them_and_records_nothing(
        db, make_src):
    src, root, outs = make_src({"a.txt": b"aaaa", "b.txt": b"bbbb"}, outputs=1)
    (pack_id,) = _scan(db, src)
    change_file(root / "a.txt", "grown")
    change_file(root / "b.txt", "deleted")
    with pytest.raises(NoContent, match="no content to pack: every range was skipped "
                                        r"\(changed since the scan or unreadable\): "
                                        "a.txt, b.txt"):
        run_job(db, pack_id)
    assert Car.select().count() == CarBlock.select().count() == 0
    assert File.select().where(File.cid.is_null(False)).count() == 0
    assert os.listdir(outs[0]) == []


class _ChangeOnFirstProgress:
    """A progress callback that changes a file once, after its first chunk was streamed:
    a change during the read, at a point we choose."""

    def __init__(self, path, change: str) -> None:
        self.path, self.change = path, change
        self.done = threading.Event()

    def __call__(self, done: int, total: int) -> None:
        if self.done.is_set():
            return
        self.done.set()
        if self.change == "grown":
            with open(self.path, "ab") as f:
                f.write(b"more")
        else:
            os.truncate(self.path, 1 << 20)


@pytest.mark.parametrize("change", ["grown", "truncated"])
def test_a_file_changed_while_it_is_read_retries_the_job_and_the_next_run_skips_it(
        db, make_src, log_lines, change):
    big = os.urandom(3 << 20)
    src, root, outs = make_src({"a.bin": big, "b.txt": b"small"}, outputs=1)
    (pack_id,) = _scan(db, src)
    changer = _ChangeOnFirstProgress(root / "a.bin", change)
    with pytest.raises(FileModified, match="file has been modified: a.bin") as caught:
        run_job(db, pack_id, progress=changer)
    assert changer.done.is_set()
    assert isinstance(caught.value, TransientError)  # the worker puts the job back
    assert Car.select().count() == 0
    assert File.select().where(File.cid.is_null(False)).count() == 0
    assert os.listdir(outs[0]) == []
    assert run_job(db, pack_id).completed
    assert any("skipped: a.bin" in m for m in log_lines)
    assert File.get(File.path == "a.bin").cid is None
    assert File.get(File.path == "b.txt").cid == _cid_of(b"small")
    assert _entries(src.root_directory_id) == {"b.txt": _cid_of(b"small")}
    car = Car.get()
    assert car.num_of_files == 1
    assert os.listdir(outs[0]) == [car.storage_path]


def test_the_worker_retries_a_pack_whose_file_changed_during_the_read_and_completes_it(
        db_url, tmp_path):
    from actors import registry  # noqa: PLC0415 (the pool is only needed here)
    from actors.testing import PoolHarness, test_config  # noqa: PLC0415
    from storage import catalog  # noqa: PLC0415
    from storage.db import connect  # noqa: PLC0415
    db = connect(db_url)
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "a.bin").write_bytes(os.urandom(3 << 20))
    (src / "b.txt").write_bytes(b"small")
    catalog.create_storage(db, "src", str(src))
    catalog.create_storage(db, "out", str(out))
    catalog.create_preparation(db, "p", ["src"], ["out"])
    catalog.start_scan(db, "p")
    handlers = dict(registry.resolve())
    pack = handlers["pack"]
    runs: list[int] = []

    def pack_changing_the_file_during_the_first_run(job, ctx):
        runs.append(job.id)
        if len(runs) == 1:
            changer = _ChangeOnFirstProgress(src / "a.bin", "grown")
            report = ctx.progress

            def progress(done: int, total: int) -> None:
                changer(done, total)
                report(done, total)

            ctx = dataclasses.replace(ctx, progress=progress)
        return pack(job, ctx)

    handlers["pack"] = pack_changing_the_file_during_the_first_run
    config = test_config(db_url, concurrency=1, min_interval=0.05, max_interval=0.2)
    with PoolHarness(config, db=db, handlers=handlers) as pool:
        assert pool.wait_for(lambda: _pack_states(db) == ["complete"], 30)
    (job,) = Job.select().where(Job.type == JobType.PACK)
    assert len(runs) == 2 and job.attempts == 2  # put back once, then done
    assert File.get(File.path == "a.bin").cid is None
    assert File.get(File.path == "b.txt").cid == _cid_of(b"small")
    assert os.listdir(out) == [Car.get().storage_path]
    db.close()


def _pack_states(db) -> list[str]:
    from storage.retry import with_retry  # noqa: PLC0415
    return with_retry(lambda d: [j.state for j in Job.select(Job.state).where(
        Job.type == JobType.PACK)], db)
