"""Bounded memory (DESIGN invariant 9): pack memory does not grow with file or job size,
scan memory does not grow with the number of files."""
from __future__ import annotations

import os
import threading
import tracemalloc

from dataprep.context import JobContext
from dataprep.pack import pack_handler
from dataprep.scan import scan_handler
from storage.jobs import load_job
from storage.models import Job, JobType
from tests.dataprep.conftest import mark_processing, run_job, write_tree
from tests.factories import make_job, make_source

MiB = 1 << 20


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _pack_peak(db, tmp_path, size: int) -> int:
    root = tmp_path / f"src-{size}"
    root.mkdir()
    with open(root / "big.bin", "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
    out = tmp_path / f"out-{size}"
    out.mkdir()
    src = make_source(db, source_path=str(root), outputs=(str(out),))
    assert run_job(db, make_job(db, src.attachment_id, JobType.SCAN)).completed
    job_id = Job.select().where((Job.type == JobType.PACK)
                                & (Job.attachment == src.attachment_id)).get().id
    worker = mark_processing(db, job_id)
    job = load_job(db, job_id)
    return _peak(lambda: pack_handler(job, JobContext(db=db, worker_id=worker)))


def test_pack_memory_does_not_grow_with_the_file_size(db, tmp_path):
    small = _pack_peak(db, tmp_path, 4 * MiB)
    big = _pack_peak(db, tmp_path, 64 * MiB)
    # A bigger job holds one small record per 1 MiB block more; the rest is the constant
    # read buffer, writer buffer and the bounded commP queue (whose fill varies by timing).
    assert big - small < 2 * MiB, (small, big)
    assert big < 8 * MiB


def _scan_peak(db, tmp_path, dirs: int) -> int:
    files = {f"d{d:03d}/f{i:03d}.txt": b"x" for d in range(dirs) for i in range(50)}
    root = write_tree(tmp_path / f"tree-{dirs}", files)
    src = make_source(db, source_path=str(root), max_size=1 << 30)
    job = load_job(db, make_job(db, src.attachment_id, JobType.SCAN))
    ctx = JobContext(db=db, cancel=threading.Event())
    return _peak(lambda: scan_handler(job, ctx))


def test_scan_memory_does_not_grow_with_the_number_of_files(db, tmp_path):
    small = _scan_peak(db, tmp_path, 4)      # 200 files
    big = _scan_peak(db, tmp_path, 40)       # 2000 files
    # Only the directory cache grows (one small entry per directory), not the file list.
    assert big - small < 200 * 1024, (small, big)
