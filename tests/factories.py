"""Test factories: insert rows directly through the models, with sensible defaults.

Every function takes a connected `Database` first (it only makes sure the models are bound
to it) and returns ids, so tests never hold peewee instances across threads.

    src = make_source(db)                       # storage + preparation + attachment + root dir
    job = make_job(db, src.attachment_id, "scan")
    pack = make_pack_job(db, src, sizes=[10, 20])   # files, ranges and the pack job
"""
from __future__ import annotations

import datetime as dt
import itertools
import uuid
from dataclasses import dataclass

from storage.db import Database
from storage.models import (Car, CarBlock, Directory, File, FileRange, Job, JobState,
                            OutputAttachment, Preparation, SourceAttachment, Storage, Worker,
                            database_proxy, utcnow)

_seq = itertools.count(1)

GIB = 1 << 30


def _bind(db: Database) -> None:
    database_proxy.initialize(db.pw)


@dataclass(frozen=True)
class Source:
    """The ids of one preparation with one source attachment (and its root directory)."""

    preparation_id: int
    storage_id: int
    attachment_id: int
    root_directory_id: int
    output_storage_ids: tuple[int, ...] = ()


def make_storage(db: Database, *, name: str | None = None, path: str = "/nonexistent/pieceworks/source",
                 type: str = "local") -> int:
    _bind(db)
    return Storage.create(name=name or f"storage-{next(_seq)}-{uuid.uuid4().hex[:6]}",
                          path=path, type=type).id


def make_preparation(db: Database, *, name: str | None = None, max_size: int = 31 * GIB,
                     piece_size: int = 32 * GIB, min_piece_size: int = 0,
                     no_inline: bool = False, no_dag: bool = False) -> int:
    _bind(db)
    return Preparation.create(name=name or f"prep-{next(_seq)}-{uuid.uuid4().hex[:6]}",
                              max_size=max_size, piece_size=piece_size,
                              min_piece_size=min_piece_size, no_inline=no_inline,
                              no_dag=no_dag).id


def make_attachment(db: Database, preparation_id: int, storage_id: int) -> tuple[int, int]:
    """A source attachment and its root directory: (attachment_id, root_directory_id)."""
    _bind(db)
    att = SourceAttachment.create(preparation=preparation_id, storage=storage_id)
    root = Directory.create(attachment=att.id, parent=None, name="")
    return att.id, root.id


def make_output(db: Database, preparation_id: int, storage_id: int) -> int:
    _bind(db)
    return OutputAttachment.create(preparation=preparation_id, storage=storage_id).id


def make_source(db: Database, *, source_path: str = "/nonexistent/pieceworks/source",
                outputs: tuple[str, ...] = (), **prep_kwargs: object) -> Source:
    """A storage, a preparation, the attachment between them, its root dir, and outputs."""
    storage_id = make_storage(db, path=source_path)
    prep_id = make_preparation(db, **prep_kwargs)  # type: ignore[arg-type]
    att_id, root_id = make_attachment(db, prep_id, storage_id)
    out_ids = []
    for out_path in outputs:
        out_id = make_storage(db, path=out_path)
        make_output(db, prep_id, out_id)
        out_ids.append(out_id)
    return Source(prep_id, storage_id, att_id, root_id, tuple(out_ids))


def make_worker(db: Database, *, worker_id: str | None = None,
                last_heartbeat: dt.datetime | None = None, hostname: str = "test",
                pid: int = 0) -> str:
    _bind(db)
    wid = worker_id or str(uuid.uuid4())
    Worker.create(id=wid, last_heartbeat=last_heartbeat or utcnow(), hostname=hostname,
                  pid=pid)
    return wid


def make_job(db: Database, attachment_id: int | None, type: str = "scan", *,
             state: str = JobState.READY, worker_id: str | None = None, attempts: int = 0,
             not_before: dt.datetime | None = None, error_message: str = "") -> int:
    _bind(db)
    return Job.create(type=type, state=state, attachment=attachment_id, worker=worker_id,
                      attempts=attempts, not_before=not_before,
                      error_message=error_message).id


def make_jobs(db: Database, attachment_id: int | None, count: int, type: str = "pack", *,
              state: str = JobState.READY, batch: int = 1000) -> None:
    """Bulk-insert `count` jobs (fast: one statement per `batch`)."""
    _bind(db)
    now = utcnow()
    rows = [{"type": type, "state": state, "attachment": attachment_id, "created_at": now,
             "updated_at": now} for _ in range(count)]
    with db.atomic():
        for start in range(0, count, batch):
            Job.insert_many(rows[start:start + batch]).execute()


def make_directory(db: Database, attachment_id: int | None, parent_id: int | None,
                   name: str = "dir") -> int:
    _bind(db)
    return Directory.create(attachment=attachment_id, parent=parent_id, name=name).id


def make_file(db: Database, attachment_id: int | None, directory_id: int | None, *,
              path: str | None = None, size: int = 100, cid: bytes | None = None) -> int:
    _bind(db)
    return File.create(attachment=attachment_id, directory=directory_id,
                       path=path or f"file-{next(_seq)}.bin", size=size, cid=cid).id


def make_range(db: Database, file_id: int, job_id: int | None, *, offset: int = 0,
               length: int = 100) -> int:
    _bind(db)
    return FileRange.create(file=file_id, job=job_id, offset=offset, length=length).id


def make_pack_job(db: Database, src: Source, *, sizes: tuple[int, ...] = (100, 200),
                  state: str = JobState.READY, worker_id: str | None = None) -> int:
    """A pack job with one file and one whole-file range per size, in order."""
    job_id = make_job(db, src.attachment_id, "pack", state=state, worker_id=worker_id)
    for size in sizes:
        file_id = make_file(db, src.attachment_id, src.root_directory_id, size=size)
        make_range(db, file_id, job_id, offset=0, length=size)
    return job_id


def make_car(db: Database, *, preparation_id: int | None, attachment_id: int | None = None,
             storage_id: int | None = None, job_id: int | None = None,
             piece_size: int = 1 << 20, file_size: int = 1000) -> int:
    _bind(db)
    return Car.create(preparation=preparation_id, attachment=attachment_id, storage=storage_id,
                      job=job_id, piece_size=piece_size, file_size=file_size,
                      piece_cid=b"\x01\x81\xe2\x03" + uuid.uuid4().bytes).id


def make_car_block(db: Database, car_id: int | None, file_id: int | None = None, *,
                   offset: int = 0, length: int = 10) -> int:
    _bind(db)
    return CarBlock.create(car=car_id, file=file_id, car_offset=offset,
                           car_block_length=length, varint=b"\x0a",
                           cid=b"\x01\x55\x12\x20" + uuid.uuid4().bytes * 2).id
