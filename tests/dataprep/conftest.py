"""Helpers of the data-path tier: source trees on disk, and running a job end to end.

`run_job` drives a job the way the worker does: mark it processing under a worker, call
its handler, then `storage.jobs.complete_job` with the outcome's `apply` (or, on failure,
`fail_job` and the outcome is never applied).
"""
from __future__ import annotations

import ctypes
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from loguru import logger

from dataprep.context import JobContext, JobOutcome
from storage.db import Database
from storage.jobs import complete_job, load_job
from storage.models import Job, JobState, JobType, Storage, Worker, utcnow
from tests.factories import Source, make_job, make_source


def write_tree(root: Path, files: dict[str | bytes, bytes], dirs: tuple[str, ...] = ()) -> Path:
    """Create files (path -> content; bytes paths allowed) and empty dirs under root."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        path = os.path.join(os.fsencode(root), os.fsencode(rel))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    return root


@dataclass
class Ran:
    job_id: int
    outcome: JobOutcome
    completed: bool


def mark_processing(db: Database, job_id: int) -> str:
    worker_id = str(uuid.uuid4())
    Worker.create(id=worker_id, hostname="test")
    Job.update(state=JobState.PROCESSING, worker=worker_id, attempts=Job.attempts + 1,
               claimed_at=utcnow()).where(Job.id == job_id).execute()
    return worker_id


def run_job(db: Database, job_id: int, *, cancel: threading.Event | None = None,
            progress=None) -> Ran:
    """Run one job through its handler and complete it (raises what the handler raises)."""
    worker_id = mark_processing(db, job_id)
    job = load_job(db, job_id)
    ctx = JobContext(db=db, cancel=cancel or threading.Event(),
                     progress=progress or (lambda done, total: None), worker_id=worker_id)
    from dataprep.handlers import HANDLERS  # noqa: PLC0415 (imports every handler)
    outcome = HANDLERS[job.type](job, ctx)
    completed = complete_job(db, job_id, worker_id, outcome.apply)
    if not completed and outcome.discard:
        outcome.discard()
    return Ran(job_id, outcome, completed)


def scan_and_pack(db: Database, src: Source, *, daggen: bool = False) -> list[int]:
    """Scan, then pack every ready pack job in id order; returns the pack job ids."""
    scan_id = make_job(db, src.attachment_id, JobType.SCAN)
    assert run_job(db, scan_id).completed
    pack_ids = [j.id for j in Job.select(Job.id).where(
        (Job.attachment == src.attachment_id) & (Job.type == JobType.PACK)
        & (Job.state == JobState.READY)).order_by(Job.id)]
    for pid in pack_ids:
        assert run_job(db, pid).completed
    if daggen:
        dag_id = make_job(db, src.attachment_id, JobType.DAGGEN)
        assert run_job(db, dag_id).completed
    return pack_ids


def set_client_config(db: Database, storage_id: int, config: dict) -> None:
    Storage.update(client_config=config).where(Storage.id == storage_id).execute()


@pytest.fixture
def log_lines():
    """Collected loguru messages of the test."""
    lines: list[str] = []
    handler_id = logger.add(lambda m: lines.append(m.record["message"]), level="DEBUG")
    yield lines
    logger.remove(handler_id)


@pytest.fixture
def make_src(db, tmp_path):
    """make_src(files, dirs=(), outputs=1, **prep) -> (Source, root path, [output dirs])."""
    def make(files: dict, dirs: tuple[str, ...] = (), outputs: int = 0, **prep):
        root = write_tree(tmp_path / f"src-{uuid.uuid4().hex[:6]}", files, dirs)
        outs = []
        for i in range(outputs):
            out = tmp_path / f"out-{uuid.uuid4().hex[:6]}"
            out.mkdir()
            outs.append(str(out))
        prep.setdefault("max_size", 31 * (1 << 30))
        src = make_source(db, source_path=str(root), outputs=tuple(outs), **prep)
        return src, root, outs
    return make


# --- running code without root's permission override -------------------------------------

class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2


def _drop_dac_for_this_thread() -> None:
    """Clear CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from this thread's effective set.

    Linux capabilities are per thread, so the rest of the test process keeps them. As root
    these are what let a process read a mode-000 file; without them permissions apply.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    data[0].effective &= ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def without_permission_override(fn, db: Database | None = None):
    """Run fn() in a fresh thread where file permissions are enforced even for root;
    return its result or re-raise its exception."""
    box: dict = {}

    def target() -> None:
        try:
            if os.geteuid() == 0:
                _drop_dac_for_this_thread()
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            box["error"] = exc
        finally:
            if db is not None:
                db.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the permission-restricted thread did not finish"
    if "error" in box:
        raise box["error"]
    return box.get("result")
