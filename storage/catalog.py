"""Storages, preparations and their attachments: what a user creates, starts and reads.

The functions behind the command line that are not job claiming or reaping: create and list
storages and preparations, start a preparation's scan or daggen jobs (SPEC §2.1 start
handlers), pause and resume all of its jobs, and report its status, pieces and jobs.
Peewee stays inside: callers get the frozen rows of `storage.rows` or the small frozen
reports defined here. Deleting a preparation is `storage.deletion.delete_preparation`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import peewee as pw

from storage.db import Database
from storage.errors import Conflict, NotFound, StorageError
from storage.models import (Car, Directory, File, Job, JobState, JobType, OutputAttachment,
                            PieceType,
                            Preparation, SourceAttachment, Storage, utcnow)
from storage.rows import PreparationRow, StorageRow

DEFAULT_MAX_SIZE = 31 * 1024**3 + 512 * 1024**2   # 31.5 GiB: fits a 32 GiB piece
MAX_PIECE_SIZE = 64 * 1024**3
MIN_PIECE_SIZE_DEFAULT = 1024**2


class InvalidParameter(StorageError):
    """A parameter of the request is not valid."""


@dataclass(frozen=True, slots=True)
class PieceRow:
    """One CAR of a preparation (`prep pieces`)."""

    id: int
    piece_cid: bytes | None
    piece_size: int
    piece_type: str
    root_cid: bytes | None
    file_size: int
    storage_path: str | None     # absolute path of the CAR; None when inline only
    num_of_files: int
    job_id: int | None
    source: str                  # name of the source storage


@dataclass(frozen=True, slots=True)
class JobListRow:
    """One job as `job list` shows it."""

    id: int
    type: str
    state: str
    attempts: int
    error_message: str
    worker_id: str | None
    preparation: str | None      # None: the job is an orphan
    progress_bytes: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class PreparationStatus:
    """The numbers of `prep status` and of the ez-prep progress display."""

    preparation: PreparationRow
    jobs: dict[str, dict[str, int]]           # type -> state -> count
    files: int
    bytes: int                                 # total size of the scanned files
    packed_bytes: int                          # bytes packed: complete pack jobs + progress
    pieces: int
    root_cids: dict[str, bytes | None]         # source storage name -> root directory CID
    sources: tuple[str, ...]
    outputs: tuple[str, ...]


def _storage_row(s: Storage) -> StorageRow:
    return StorageRow(id=s.id, name=s.name, type=s.type, path=s.path, config=dict(s.config),
                      client_config=dict(s.client_config))


def _prep_row(p: Preparation) -> PreparationRow:
    return PreparationRow(id=p.id, name=p.name, max_size=p.max_size, piece_size=p.piece_size,
                          min_piece_size=p.min_piece_size, no_inline=p.no_inline,
                          no_dag=p.no_dag, delete_after_export=p.delete_after_export)


def next_pow2(n: int) -> int:
    """The smallest power of two ≥ n (1 for n ≤ 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


# ---- storages -------------------------------------------------------------------------------

def create_storage(db: Database, name: str, path: str, *, type: str = "local",
                   client_config: dict | None = None) -> StorageRow:
    """Create a local storage rooted at `path` (made absolute).

    Raises:
        InvalidParameter: empty name, or the path is not a directory.
        Conflict: a storage of that name exists.
    """
    if not name:
        raise InvalidParameter("storage name must not be empty")
    path = os.path.abspath(path)
    if type == "local" and not os.path.isdir(path):
        raise InvalidParameter(f"storage path {path} is not a directory")
    with db.atomic():
        if Storage.select().where(Storage.name == name).exists():
            raise Conflict(f"storage {name!r} already exists")
        s = Storage.create(name=name, path=path, type=type, client_config=client_config or {})
    return _storage_row(s)


def get_storage(db: Database, name: str) -> StorageRow:
    """The storage called `name`. Raises NotFound."""
    s = Storage.get_or_none(Storage.name == name)
    if s is None:
        raise NotFound(f"storage {name!r} not found")
    return _storage_row(s)


def find_storage_by_path(db: Database, path: str) -> StorageRow | None:
    """The local storage rooted at `path` (absolute), if one exists."""
    s = (Storage.select().where(Storage.type == "local", Storage.path == os.path.abspath(path))
         .order_by(Storage.id).first())
    return None if s is None else _storage_row(s)


def list_storages(db: Database) -> list[StorageRow]:
    """Every storage, by id."""
    return [_storage_row(s) for s in Storage.select().order_by(Storage.id)]


# ---- preparations ---------------------------------------------------------------------------

def _check_sizes(max_size: int, min_piece_size: int, piece_size: int | None) -> tuple[int, int]:
    if max_size <= 0:
        raise InvalidParameter(f"max size must be more than 0, got {max_size}")
    if piece_size is None:
        # The smallest piece that holds a max-size CAR after Fr32 expansion.
        piece_size = max(next_pow2(max_size * 128 // 127 + 1), 256)
    if piece_size != next_pow2(piece_size) or piece_size < 256:
        raise InvalidParameter(f"piece size must be a power of two of at least 256, got {piece_size}")
    if piece_size > MAX_PIECE_SIZE:
        raise InvalidParameter(f"piece size cannot be more than 64 GiB, got {piece_size}")
    if max_size * 128 // 127 >= piece_size:
        raise InvalidParameter(f"max size {max_size} does not fit a piece of {piece_size} "
                               "bytes after padding; lower the max size")
    if min_piece_size:
        if min_piece_size != next_pow2(min_piece_size) or min_piece_size < 256:
            raise InvalidParameter("min piece size must be a power of two of at least 256, "
                                   f"got {min_piece_size}")
        if min_piece_size > piece_size:
            raise InvalidParameter(f"min piece size {min_piece_size} is more than the piece "
                                   f"size {piece_size}")
    return piece_size, min_piece_size


def create_preparation(db: Database, name: str, sources: Sequence[str],
                       outputs: Sequence[str] = (), *, max_size: int = DEFAULT_MAX_SIZE,
                       min_piece_size: int = 0, piece_size: int | None = None,
                       no_inline: bool = False, no_dag: bool = False,
                       skip_inaccessible: bool = False) -> PreparationRow:
    """Create a preparation over the named source storages, writing CARs to `outputs`.

    Creates one source attachment per source, with its root directory row (name "",
    parent NULL), in one transaction. `skip_inaccessible` sets `skipInaccessibleFile` in
    the client config of the source storages (SPEC §7.3).

    Raises:
        InvalidParameter: bad name or sizes, no source, or `no_inline` without an output.
        NotFound: a storage does not exist.
        Conflict: a preparation of that name exists.
    """
    if not name:
        raise InvalidParameter("preparation name must not be empty")
    if not sources:
        raise InvalidParameter("a preparation needs at least one source")
    if no_inline and not outputs:
        raise InvalidParameter("--no-inline needs an output storage: the CARs would exist nowhere")
    piece_size, min_piece_size = _check_sizes(max_size, min_piece_size, piece_size)
    with db.atomic():
        if Preparation.select().where(Preparation.name == name).exists():
            raise Conflict(f"preparation {name!r} already exists")
        source_rows = [_get_storage_model(n) for n in dict.fromkeys(sources)]
        output_rows = [_get_storage_model(n) for n in dict.fromkeys(outputs)]
        now = utcnow()
        prep = Preparation.create(name=name, max_size=max_size, piece_size=piece_size,
                                  min_piece_size=min_piece_size, no_inline=no_inline,
                                  no_dag=no_dag, created_at=now, updated_at=now)
        for s in source_rows:
            if skip_inaccessible and not s.client_config.get("skipInaccessibleFile"):
                Storage.update(client_config={**s.client_config, "skipInaccessibleFile": True},
                               updated_at=now).where(Storage.id == s.id).execute()
            att = SourceAttachment.create(preparation=prep, storage=s)
            Directory.create(name="", parent=None, attachment=att)
        for s in output_rows:
            OutputAttachment.create(preparation=prep, storage=s)
    return _prep_row(prep)


def _get_storage_model(name: str) -> Storage:
    s = Storage.get_or_none(Storage.name == name)
    if s is None:
        raise NotFound(f"storage {name!r} not found")
    return s


def _get_prep_model(name: str) -> Preparation:
    p = Preparation.get_or_none(Preparation.name == name)
    if p is None and name.isdigit():
        p = Preparation.get_or_none(Preparation.id == int(name))
    if p is None:
        raise NotFound(f"preparation {name!r} not found")
    return p


def get_preparation(db: Database, name: str) -> PreparationRow:
    """The preparation called `name` (or with that id). Raises NotFound."""
    return _prep_row(_get_prep_model(name))


def list_preparations(db: Database) -> list[PreparationRow]:
    """Every preparation, by id."""
    return [_prep_row(p) for p in Preparation.select().order_by(Preparation.id)]


def _attachments(prep: Preparation) -> list[SourceAttachment]:
    return list(SourceAttachment.select(SourceAttachment, Storage).join(Storage)
                .where(SourceAttachment.preparation == prep).order_by(SourceAttachment.id))


def _prep_jobs(prep_id: int) -> pw.ModelSelect:
    return Job.select().join(SourceAttachment).where(SourceAttachment.preparation == prep_id)


# ---- starting, pausing, resuming ------------------------------------------------------------

def _start(db: Database, name: str, job_type: str) -> list[int]:
    """Start (or restart) the one `job_type` job of every source attachment (SPEC §2.1)."""
    with db.atomic():
        prep = _get_prep_model(name)
        if job_type == JobType.DAGGEN and prep.no_dag:
            raise InvalidParameter(f"dag generation is disabled for preparation {prep.name!r}")
        now = utcnow()
        plan: list[tuple[SourceAttachment, Job | None]] = []
        for att in _attachments(prep):
            job = (Job.select().where(Job.type == job_type, Job.attachment == att)
                   .order_by(Job.id).first())
            if job is not None and job.state in (JobState.READY, JobState.PROCESSING):
                raise Conflict(f"{job_type} job {job.id} of source {att.storage.name!r} is "
                               f"already running ({job.state})")
            plan.append((att, job))
        ids = []
        for att, job in plan:
            if job is None:
                job = Job.create(type=job_type, state=JobState.READY, attachment=att,
                                 created_at=now, updated_at=now)
            else:
                # A restart is a fresh start: attempts and backoff begin again. worker_id is
                # kept: a worker that still holds the job lets go before anyone reclaims it.
                Job.update(state=JobState.READY, error_message="", error_stack_trace="",
                           attempts=0, not_before=None, progress_bytes=0, total_bytes=0,
                           updated_at=now).where(Job.id == job.id).execute()
            ids.append(job.id)
        return ids


def start_scan(db: Database, name: str) -> list[int]:
    """Create or restart the scan job of every source of the preparation; returns job ids.

    Raises:
        NotFound: no such preparation.
        Conflict: a scan job is already ready or processing (nothing is changed).
    """
    return _start(db, name, JobType.SCAN)


def start_daggen(db: Database, name: str) -> list[int]:
    """Create or restart the daggen job of every source of the preparation; returns job ids.

    Raises:
        NotFound: no such preparation.
        InvalidParameter: the preparation has `no_dag` set.
        Conflict: a daggen job is already ready or processing (nothing is changed).
    """
    return _start(db, name, JobType.DAGGEN)


def pause_preparation(db: Database, name: str) -> int:
    """ready/processing → paused for every job of the preparation; returns how many.

    worker_id is kept: the worker running a job lets go once it has stopped.
    """
    with db.atomic():
        prep = _get_prep_model(name)
        ids = [j.id for j in _prep_jobs(prep.id).where(
            Job.state.in_([JobState.READY, JobState.PROCESSING]))]
        if not ids:
            return 0
        return (Job.update(state=JobState.PAUSED, updated_at=utcnow())
                .where(Job.id.in_(ids), Job.state.in_([JobState.READY, JobState.PROCESSING]))
                .execute())


def resume_preparation(db: Database, name: str) -> int:
    """paused → ready for every job of the preparation; returns how many."""
    with db.atomic():
        prep = _get_prep_model(name)
        ids = [j.id for j in _prep_jobs(prep.id).where(Job.state == JobState.PAUSED)]
        if not ids:
            return 0
        return (Job.update(state=JobState.READY, updated_at=utcnow())
                .where(Job.id.in_(ids), Job.state == JobState.PAUSED).execute())


# ---- reading --------------------------------------------------------------------------------

def preparation_status(db: Database, name: str) -> PreparationStatus:
    """Job counts per type and state, files, bytes, pieces and root CIDs of a preparation."""
    prep = _get_prep_model(name)
    atts = _attachments(prep)
    att_ids = [a.id for a in atts]
    jobs: dict[str, dict[str, int]] = {}
    packed = 0
    if att_ids:
        for row in (Job.select(Job.type, Job.state, pw.fn.COUNT(Job.id).alias("n"),
                               pw.fn.SUM(Job.progress_bytes).alias("done"),
                               pw.fn.SUM(Job.total_bytes).alias("total"))
                    .where(Job.attachment.in_(att_ids)).group_by(Job.type, Job.state)
                    .namedtuples()):
            jobs.setdefault(row.type, {})[row.state] = row.n
            if row.type == JobType.PACK:
                # A complete job's last progress report may predate its end: count it whole.
                done = int(row.done or 0)
                packed += max(done, int(row.total or 0)) if row.state == JobState.COMPLETE else done
    files, total = 0, 0
    if att_ids:
        row = (File.select(pw.fn.COUNT(File.id).alias("n"), pw.fn.SUM(File.size).alias("b"))
               .where(File.attachment.in_(att_ids)).namedtuples().first())
        files, total = int(row.n or 0), int(row.b or 0)
    pieces = Car.select().where(Car.preparation == prep.id).count()
    roots: dict[str, bytes | None] = {}
    for att in atts:
        # The dataset's root is the one the last DAG piece exported; before daggen has run,
        # the root directory's CID is a partial tree and would mislead.
        dag_car = (Car.select(Car.root_cid)
                   .where(Car.attachment == att.id, Car.piece_type == PieceType.DAG)
                   .order_by(Car.id.desc()).first())
        roots[att.storage.name] = dag_car.root_cid if dag_car is not None else None
    outputs = tuple(o.storage.name for o in OutputAttachment.select(OutputAttachment, Storage)
                    .join(Storage).where(OutputAttachment.preparation == prep)
                    .order_by(OutputAttachment.id))
    return PreparationStatus(preparation=_prep_row(prep), jobs=jobs, files=files, bytes=total,
                             packed_bytes=packed, pieces=pieces, root_cids=roots,
                             sources=tuple(a.storage.name for a in atts), outputs=outputs)


def list_pieces(db: Database, name: str) -> list[PieceRow]:
    """Every CAR of the preparation: data pieces by pack job, then dag pieces, oldest first.

    Ordered by job, not by completion, so the listing is the same however the jobs ran."""
    prep = _get_prep_model(name)
    out = []
    query = (Car.select(Car, Storage, SourceAttachment)
             .join(Storage, pw.JOIN.LEFT_OUTER, on=(Car.storage == Storage.id))
             .switch(Car)
             .join(SourceAttachment, pw.JOIN.LEFT_OUTER, on=(Car.attachment == SourceAttachment.id))
             .where(Car.preparation == prep.id)
             .order_by(Car.piece_type.desc(), Car.job_id, Car.id))  # 'data' > 'dag'
    source_names = {a.id: a.storage.name for a in _attachments(prep)}
    for car in query:
        path = None
        if car.storage_id is not None and car.storage_path:
            path = os.path.join(car.storage.path, car.storage_path)
        out.append(PieceRow(id=car.id, piece_cid=car.piece_cid, piece_size=car.piece_size,
                            piece_type=car.piece_type, root_cid=car.root_cid,
                            file_size=car.file_size, storage_path=path,
                            num_of_files=car.num_of_files, job_id=car.job_id,
                            source=source_names.get(car.attachment_id, "")))
    return out


def list_jobs(db: Database, *, preparation: str | None = None, state: str | None = None,
              type: str | None = None, ids: Iterable[int] | None = None) -> list[JobListRow]:
    """Jobs, by id, optionally of one preparation, state or type (orphans included)."""
    query = (Job.select(Job, SourceAttachment, Preparation)
             .join(SourceAttachment, pw.JOIN.LEFT_OUTER, on=(Job.attachment == SourceAttachment.id))
             .join(Preparation, pw.JOIN.LEFT_OUTER,
                   on=(SourceAttachment.preparation == Preparation.id))
             .order_by(Job.id))
    if preparation is not None:
        query = query.where(Preparation.id == _get_prep_model(preparation).id)
    if state is not None:
        query = query.where(Job.state == state)
    if type is not None:
        query = query.where(Job.type == type)
    if ids is not None:
        query = query.where(Job.id.in_(list(ids)))
    rows = []
    for job in query:
        prep_name = None
        if job.attachment_id is not None:
            prep_name = job.attachment.preparation.name
        rows.append(JobListRow(id=job.id, type=job.type, state=job.state, attempts=job.attempts,
                               error_message=job.error_message, worker_id=job.worker_id,
                               preparation=prep_name, progress_bytes=job.progress_bytes,
                               total_bytes=job.total_bytes))
    return rows
