"""Scan (SPEC §6): split size, estimates, grouping, rescans, interrupted scans."""
from __future__ import annotations

import threading

import pytest

from dataprep.context import JobContext
from dataprep.errors import JobCancelled, SourceError
from dataprep.scan import estimate, group_ranges, scan_handler, split_size
from storage import scanning
from storage.jobs import load_job
from storage.models import Directory, File, FileRange, Job, JobType
from tests.dataprep.conftest import run_job, write_tree
from tests.factories import make_job

MiB = 1 << 20
GiB = 1 << 30


@pytest.mark.parametrize("length,est", [
    (0, 37), (1, 40), (1001, 1040), (1048576, 1048615), (1048577, 1048803),
    (2097152, 2097378), (10485760, 10486714), (104857600, 104866744)])
def test_range_estimates_match_spec_vector_20(length, est):
    assert estimate(length) == est


@pytest.mark.parametrize("max_size,size", [
    (GiB, 256 * MiB), (4 * GiB, GiB), (32 * GiB, GiB), (int(31.5 * GiB), GiB),
    (2_000_000, 512 * 1024), (16, 4)])
def test_split_size_matches_spec_vector_21(max_size, size):
    assert split_size(max_size) == size


def test_a_range_too_big_for_an_empty_group_gets_its_own_group_never_an_empty_one():
    groups = list(group_ranges([(1, 10), (2, 1000), (3, 10), (4, 10)], max_size=100))
    assert groups == [[1], [2], [3], [4]]
    assert all(groups)


def test_ranges_are_grouped_while_the_estimate_fits():
    # header 59 + 3 x est(1)=40 = 179 <= 180; the 4th range starts a new group
    assert list(group_ranges([(i, 1) for i in range(5)], max_size=180)) == [[0, 1, 2], [3, 4]]


def _tree23(root):
    files = {"empty.bin": b"", "1.bin": b"1", "1k.bin": b"k" * 1024, "1m.bin": b"m" * MiB,
             "16m.bin": b"s" * (16 * MiB), "1/2/3/10.bin": b"t" * 10, "1/2/3/11.bin": b"e" * 11,
             "1/2/3 1.bin": b"o" * 31, "1/2/32.bin": b"w" * 32}
    return write_tree(root, files, dirs=("emptyfolder",))


def test_the_scan_of_spec_vector_23_makes_5_directories_41_ranges_and_12_pack_jobs(
        db, make_src, tmp_path):
    src, root, _ = make_src({}, max_size=2_000_000)
    _tree23(root)
    scan_id = make_job(db, src.attachment_id, JobType.SCAN)
    assert run_job(db, scan_id).completed
    assert Directory.select().where(Directory.attachment == src.attachment_id).count() == 5
    assert FileRange.select().count() == 41
    assert all(r.length <= 512 * 1024 for r in FileRange.select())
    assert Job.select().where(Job.type == JobType.PACK).count() == 12
    assert FileRange.select().where(FileRange.job.is_null()).count() == 0
    assert Job.select().count() == 13


def test_ensure_directories_matches_spec_vector_24(db, make_src):
    src, _, _ = make_src({})
    cache = scanning.DirectoryCache(db, src.attachment_id)
    cache.ensure("sub1/sub2/sub3/sub4")
    assert Directory.select().count() == 5
    cache.ensure("sub1/sub2/c/d")
    cache.ensure("x/y/z")
    assert Directory.select().count() == 10
    fresh = scanning.DirectoryCache(db, src.attachment_id)
    fresh.ensure("sub1/sub2/c/d")
    assert Directory.select().count() == 10


def test_a_rescan_records_new_and_changed_files_and_leaves_unchanged_ones(db, make_src):
    src, root, _ = make_src({"a.txt": b"aaa", "b.txt": b"bbb"})
    assert run_job(db, make_job(db, src.attachment_id, JobType.SCAN)).completed
    (root / "b.txt").write_bytes(b"bbbb")
    (root / "c.txt").write_bytes(b"c")
    assert run_job(db, make_job(db, src.attachment_id, JobType.SCAN)).completed
    rows = sorted((f.path, f.size) for f in File.select())
    assert rows == [("a.txt", 3), ("b.txt", 3), ("b.txt", 4), ("c.txt", 1)]
    assert FileRange.select().count() == 4
    assert FileRange.select().where(FileRange.job.is_null()).count() == 0


def test_an_interrupted_scan_run_again_neither_duplicates_nor_loses_a_file(db, make_src):
    files = {f"d{i % 3}/f{i:03d}.bin": bytes([i]) * i for i in range(250)}
    src, _, _ = make_src(files, max_size=10_000)
    job_id = make_job(db, src.attachment_id, JobType.SCAN)
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        cancel.set()  # cancel after the first batch has been recorded

    job = load_job(db, job_id)
    with pytest.raises(JobCancelled):
        scan_handler(job, JobContext(db=db, cancel=cancel, progress=progress))
    partial = File.select().count()
    assert 0 < partial < 250
    assert run_job(db, job_id).completed
    assert File.select().count() == 250
    assert sorted(f.path for f in File.select()) == sorted(files)
    assert FileRange.select().where(FileRange.job.is_null()).count() == 0
    assert FileRange.select().count() == 250


def test_a_missing_source_root_fails_the_scan_naming_it(db, make_src, tmp_path):
    src, root, _ = make_src({})
    root.rmdir()
    with pytest.raises(SourceError, match=str(root)):
        run_job(db, make_job(db, src.attachment_id, JobType.SCAN))


def test_many_files_are_recorded_in_batches(db, make_src):
    files = {f"f{i:04d}": b"" for i in range(1200)}
    src, _, _ = make_src(files, max_size=1 << 30)
    assert run_job(db, make_job(db, src.attachment_id, JobType.SCAN)).completed
    assert File.select().count() == 1200
    assert Job.select().where(Job.type == JobType.PACK).count() == 1


def test_hello_world_with_max_size_16_gets_3_ranges_once_spec_vector_22(db, make_src):
    src, root, _ = make_src({"hello.txt": b"hello world"}, max_size=16)
    st = (root / "hello.txt").stat()
    cache = scanning.DirectoryCache(db, src.attachment_id)
    new = scanning.NewFile("hello.txt", 11, st.st_mtime_ns, cache.root_id)
    assert scanning.record_files(db, src.attachment_id, [new], split_size(16)) == 1
    assert [(r.offset, r.length) for r in FileRange.select().order_by(FileRange.offset)] == [
        (0, 4), (4, 4), (8, 3)]
    assert scanning.record_files(db, src.attachment_id, [new], split_size(16)) == 0
    assert FileRange.select().count() == 3


def test_the_handler_registry_has_the_three_job_types_and_scan_reports_progress(db, make_src):
    from dataprep.handlers import HANDLERS  # noqa: PLC0415
    assert set(HANDLERS) == {"scan", "pack", "daggen"}
    src, _, _ = make_src({"a": b"12345", "b/c": b"678"})
    seen = []
    assert run_job(db, make_job(db, src.attachment_id, JobType.SCAN),
                   progress=lambda done, total: seen.append((done, total))).completed
    assert seen[-1] == (8, 8)
