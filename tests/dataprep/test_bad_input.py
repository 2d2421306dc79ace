"""Bad input: each case fails with a clear error naming the path, or is skipped with a
warning, and nothing else is lost or half-recorded."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import uuid

import pytest

from dataprep.dirstate import DirectoryState
from dataprep.errors import (JobCancelled, NoContent, OutputError,
                             SourceError)
from storage.models import Car, CarBlock, Directory, File, FileRange, Job, JobType
from tests.dataprep.conftest import (run_job, scan_and_pack, set_client_config,
                                     without_permission_override)
from tests.factories import make_job


def _scan(db, src) -> list[int]:
    assert run_job(db, make_job(db, src.attachment_id, JobType.SCAN)).completed
    return [j.id for j in Job.select().where(Job.type == JobType.PACK).order_by(Job.id)]


def _nothing_recorded(outs=()) -> None:
    assert Car.select().count() == 0
    assert CarBlock.select().count() == 0
    assert File.select().where(File.cid.is_null(False)).count() == 0
    assert FileRange.select().where(FileRange.cid.is_null(False)).count() == 0
    assert Directory.select().where(Directory.cid.is_null(False)).count() == 0
    for out in outs:
        assert os.listdir(out) == []


def _touch_later(path) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def change_file(target, change: str) -> None:
    """Modify, grow, truncate or delete a scanned file (the mtime always moves on)."""
    if change == "modified":
        target.write_bytes(b"B" * target.stat().st_size)
        _touch_later(target)
    elif change == "grown":
        with open(target, "ab") as f:
            f.write(b"more")
    elif change == "truncated":
        target.write_bytes(b"b")
        _touch_later(target)
    else:
        target.unlink()


@pytest.mark.parametrize("change", ["modified", "grown", "truncated", "deleted"])
def test_a_file_changed_between_scan_and_pack_is_skipped_naming_it_and_the_rest_packed(
        db, make_src, log_lines, change):
    src, root, outs = make_src({"a.txt": b"aaaa", "sub/b.txt": b"bbbbbb"}, outputs=1)
    (pack_id,) = _scan(db, src)
    change_file(root / "sub" / "b.txt", change)
    assert run_job(db, pack_id).completed
    assert any("file has been modified since the scan, skipped: sub/b.txt "
               "(scan again to pack its new version)" in m for m in log_lines)
    assert File.get(File.path == "sub/b.txt").cid is None
    assert FileRange.get(FileRange.file == File.get(File.path == "sub/b.txt")).cid is None
    assert File.get(File.path == "a.txt").cid is not None
    car = Car.get()
    assert car.num_of_files == 1
    assert os.listdir(outs[0]) == [car.storage_path]


def test_an_unreadable_file_fails_the_pack_naming_it(db, make_src):
    src, root, outs = make_src({"ok.txt": b"fine", "secret.txt": b"hidden"}, outputs=1)
    (pack_id,) = _scan(db, src)
    os.chmod(root / "secret.txt", 0)
    with pytest.raises(SourceError, match="cannot open secret.txt"):
        without_permission_override(lambda: run_job(db, pack_id), db)
    _nothing_recorded(outs)


def test_an_unreadable_file_is_skipped_with_skip_inaccessible_and_gets_no_entry(
        db, make_src, log_lines):
    src, root, _ = make_src({"ok.txt": b"fine", "secret.txt": b"hidden"})
    set_client_config(db, src.storage_id, {"skip_inaccessible": True})
    (pack_id,) = _scan(db, src)
    os.chmod(root / "secret.txt", 0)
    assert without_permission_override(lambda: run_job(db, pack_id), db).completed
    assert any("skipping unreadable file secret.txt" in m for m in log_lines)
    assert File.get(File.path == "secret.txt").cid is None
    assert File.get(File.path == "ok.txt").cid is not None
    assert Car.get().num_of_files == 1
    state = DirectoryState.from_bytes(Directory.get_by_id(src.root_directory_id).data)
    assert [e.name for e in state.directory] == ["ok.txt"]


def test_an_unreadable_directory_fails_the_scan_or_is_skipped(db, make_src, log_lines):
    src, root, _ = make_src({"ok.txt": b"1", "locked/x.txt": b"2"})
    os.chmod(root / "locked", 0)
    try:
        scan_id = make_job(db, src.attachment_id, JobType.SCAN)
        with pytest.raises(SourceError, match="cannot list directory locked"):
            without_permission_override(lambda: run_job(db, scan_id), db)
        set_client_config(db, src.storage_id, {"skipInaccessibleFile": "true"})
        assert without_permission_override(lambda: run_job(db, scan_id), db).completed
    finally:
        os.chmod(root / "locked", 0o755)
    assert [f.path for f in File.select()] == ["ok.txt"]


def test_links_fifos_and_sockets_are_never_packed(db, make_src, tmp_path):
    src, root, _ = make_src({"d/real.txt": b"real"})
    os.symlink("..", root / "d" / "loop")
    os.symlink("real.txt", root / "d" / "alias.txt")
    os.symlink(str(tmp_path), root / "outside")
    os.mkfifo(root / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    try:
        scan_and_pack(db, src)
    finally:
        sock.close()
    assert [f.path for f in File.select()] == ["d/real.txt"]
    assert Car.get().num_of_files == 1


def test_a_missing_output_directory_fails_the_pack_and_records_nothing(db, make_src):
    src, _, outs = make_src({"a.txt": b"x" * 100}, outputs=1)
    (pack_id,) = _scan(db, src)
    shutil.rmtree(outs[0])
    with pytest.raises(OutputError, match="storage not available"):
        run_job(db, pack_id)
    _nothing_recorded()


def test_a_read_only_output_directory_fails_the_pack_and_records_nothing(db, make_src):
    src, _, outs = make_src({"a.txt": b"x" * 100}, outputs=1)
    (pack_id,) = _scan(db, src)
    os.chmod(outs[0], 0o555)
    with pytest.raises(OutputError, match="cannot create a CAR in output directory"):
        without_permission_override(lambda: run_job(db, pack_id), db)
    _nothing_recorded(outs)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (or, failing that, a 1 MiB loop-mounted ext2) directory."""
    mnt = tmp_path / f"tiny-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    tried = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                           capture_output=True, text=True)
    if tried.returncode != 0:
        image = tmp_path / "disk.img"
        image.write_bytes(bytes(1 << 20))
        subprocess.run(["mkfs.ext2", "-q", "-F", str(image)], check=True, capture_output=True)
        loop = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)],
                              capture_output=True, text=True)
        if loop.returncode != 0:
            pytest.skip(f"cannot mount a small filesystem: {tried.stderr.strip()}; "
                        f"{loop.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_a_full_disk_fails_the_pack_removes_the_temp_file_and_records_nothing(
        db, make_src, tiny_disk):
    src, _, _ = make_src({"big.bin": os.urandom(3 << 20)}, outputs=0)
    from tests.factories import make_output, make_storage  # noqa: PLC0415
    make_output(db, src.preparation_id, make_storage(db, path=str(tiny_disk)))
    (pack_id,) = _scan(db, src)
    with pytest.raises(OutputError, match="disk full"):
        run_job(db, pack_id)
    assert os.listdir(tiny_disk) == []
    _nothing_recorded()


def test_a_max_size_smaller_than_one_range_makes_no_empty_pack_jobs(db, make_src):
    src, _, _ = make_src({"a.bin": os.urandom(200), "b.bin": b""}, max_size=100)
    pack_ids = scan_and_pack(db, src)
    assert len(pack_ids) == FileRange.select().count() == 8  # 7 ranges of <=32 B, 1 empty
    assert all(FileRange.select().where(FileRange.job == j).count() == 1 for j in pack_ids)
    assert {j.state for j in Job.select().where(Job.type == JobType.PACK)} == {"complete"}
    assert File.select().where(File.cid.is_null()).count() == 0


def test_a_pack_with_nothing_readable_fails_with_no_content(db, make_src):
    src, root, _ = make_src({"secret.txt": b"hidden"})
    set_client_config(db, src.storage_id, {"skip_inaccessible": True})
    (pack_id,) = _scan(db, src)
    os.chmod(root / "secret.txt", 0)
    with pytest.raises(NoContent, match="no content to pack"):
        without_permission_override(lambda: run_job(db, pack_id), db)
    _nothing_recorded()


def test_a_cancelled_pack_removes_its_temp_file_and_records_nothing(db, make_src):
    src, _, outs = make_src({"big.bin": os.urandom(3 << 20)}, outputs=1)
    (pack_id,) = _scan(db, src)
    cancel = threading.Event()
    with pytest.raises(JobCancelled):
        run_job(db, pack_id, cancel=cancel, progress=lambda done, total: cancel.set())
    _nothing_recorded(outs)


def test_a_lost_compare_and_set_discards_the_car_unless_a_car_row_uses_it(db, make_src):
    from dataprep.handlers import HANDLERS  # noqa: PLC0415
    from dataprep.context import JobContext  # noqa: PLC0415
    from storage.jobs import complete_job, load_job  # noqa: PLC0415
    from tests.dataprep.conftest import mark_processing  # noqa: PLC0415
    src, _, outs = make_src({"a.txt": b"a" * 1000}, outputs=1)
    (pack_id,) = _scan(db, src)
    worker = mark_processing(db, pack_id)
    outcome = HANDLERS["pack"](load_job(db, pack_id), JobContext(db=db, worker_id=worker))
    assert len(os.listdir(outs[0])) == 1
    assert not complete_job(db, pack_id, "someone-else", outcome.apply)
    outcome.discard()
    assert os.listdir(outs[0]) == []
    _nothing_recorded(outs)
    # The same piece, completed by the winner: the loser's discard keeps the shared file.
    winner = HANDLERS["pack"](load_job(db, pack_id), JobContext(db=db, worker_id=worker))
    loser = HANDLERS["pack"](load_job(db, pack_id), JobContext(db=db, worker_id=worker))
    assert complete_job(db, pack_id, worker, winner.apply)
    loser.discard()
    assert os.listdir(outs[0]) == [Car.get().storage_path]


def test_a_pack_job_run_again_replaces_its_rows_instead_of_duplicating_them(db, make_src):
    src, _, _ = make_src({"a.txt": b"a" * 1000, "b.txt": b"b"})
    (pack_id,) = scan_and_pack(db, src)
    blocks = CarBlock.select().count()
    Job.update(state="ready", worker=None).where(Job.id == pack_id).execute()
    assert run_job(db, pack_id).completed
    assert Car.select().count() == 1
    assert CarBlock.select().count() == blocks


def test_a_file_whose_directory_became_unreadable_fails_or_is_skipped(db, make_src, log_lines):
    src, root, _ = make_src({"ok.txt": b"fine", "sub/x.txt": b"hidden"})
    (pack_id,) = _scan(db, src)
    os.chmod(root / "sub", 0)
    try:
        with pytest.raises(SourceError, match="cannot open sub/x.txt"):
            without_permission_override(lambda: run_job(db, pack_id), db)
        set_client_config(db, src.storage_id, {"skip_inaccessible": True})
        Job.update(state="ready", worker=None).where(Job.id == pack_id).execute()
        assert without_permission_override(lambda: run_job(db, pack_id), db).completed
    finally:
        os.chmod(root / "sub", 0o755)
    assert File.get(File.path == "sub/x.txt").cid is None
    assert Directory.get(Directory.name == "sub").cid is None  # no entry, no node


def test_a_file_replaced_by_a_fifo_fails_the_pack_without_blocking(db, make_src):
    src, root, _ = make_src({"a.txt": b"aaaa"})
    (pack_id,) = _scan(db, src)
    (root / "a.txt").unlink()
    os.mkfifo(root / "a.txt")
    with pytest.raises(SourceError, match="a.txt is no longer a regular file"):
        run_job(db, pack_id)
    _nothing_recorded()


class _FlakyReader:
    """A real file whose reads fail with EIO a given number of times (a disk or network
    error cannot be produced on demand on a local filesystem)."""

    def __init__(self, fobj, failures: list[int]) -> None:
        self._fobj = fobj
        self._failures = failures

    def readinto(self, view) -> int:
        if self._failures[0] > 0:
            self._failures[0] -= 1
            raise OSError(5, "Input/output error")
        return self._fobj.readinto(view)

    def close(self) -> None:
        self._fobj.close()


@pytest.mark.parametrize("failures,ok", [(2, True), (4, False)])
def test_read_errors_are_retried_by_reopening_then_fail_naming_the_file(
        db, make_src, monkeypatch, log_lines, failures, ok):
    import dataprep.pack as pack  # noqa: PLC0415
    from dataprep.source import LocalSource  # noqa: PLC0415
    data = os.urandom(3 << 20)
    src, _, _ = make_src({"f.bin": data})
    set_client_config(db, src.storage_id, {"retryMaxCount": 3, "retryDelay": 0})
    (pack_id,) = _scan(db, src)
    left = [failures]

    class Flaky(LocalSource):
        def open(self, path, offset=0):
            return _FlakyReader(super().open(path, offset), left)

    monkeypatch.setattr(pack, "source_for", lambda kind, path, cfg: Flaky(path))
    if not ok:
        with pytest.raises(SourceError, match="cannot read f.bin at offset 0"):
            run_job(db, pack_id)
        _nothing_recorded()
        return
    assert run_job(db, pack_id).completed
    assert sum("read error on f.bin" in m for m in log_lines) == failures
    from dataprep.unixfs import file_dag_from_chunks  # noqa: PLC0415
    chunks = [data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
    assert File.get().cid == file_dag_from_chunks(chunks)[0].root_cid


def test_two_jobs_producing_the_same_piece_share_one_file(db, tmp_path):
    from tests.dataprep.conftest import write_tree  # noqa: PLC0415
    from tests.factories import make_output, make_source, make_storage  # noqa: PLC0415
    out = tmp_path / "shared-out"
    out.mkdir()
    data = {"same.bin": os.urandom(300_000)}
    srcs = []
    for i in range(2):
        root = write_tree(tmp_path / f"src{i}", data)
        src = make_source(db, source_path=str(root))
        make_output(db, src.preparation_id, make_storage(db, path=str(out)))
        srcs.append(src)
    errors = []

    def work(src) -> None:
        try:
            scan_and_pack(db, src)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=work, args=(s,)) for s in srcs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    cars = list(Car.select())
    assert len(cars) == 2 and cars[0].storage_path == cars[1].storage_path
    assert os.listdir(out) == [cars[0].storage_path]
    assert os.path.getsize(out / cars[0].storage_path) == cars[0].file_size


def test_a_daggen_that_lost_its_compare_and_set_removes_its_car_and_marks_nothing(
        db, make_src):
    from dataprep.context import JobContext  # noqa: PLC0415
    from dataprep.handlers import HANDLERS  # noqa: PLC0415
    from storage.jobs import complete_job, load_job  # noqa: PLC0415
    from tests.dataprep.conftest import mark_processing  # noqa: PLC0415
    src, _, outs = make_src({"a.txt": b"a" * 500}, outputs=1)
    scan_and_pack(db, src)
    before = set(os.listdir(outs[0]))
    dag_id = make_job(db, src.attachment_id, JobType.DAGGEN)
    worker = mark_processing(db, dag_id)
    outcome = HANDLERS["daggen"](load_job(db, dag_id), JobContext(db=db, worker_id=worker))
    assert len(os.listdir(outs[0])) == len(before) + 1
    assert not complete_job(db, dag_id, "not-the-owner", outcome.apply)
    outcome.discard()
    assert set(os.listdir(outs[0])) == before
    assert Car.select().where(Car.piece_type == "dag").count() == 0
    assert Directory.select().where(Directory.exported == True).count() == 0  # noqa: E712
