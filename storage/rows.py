"""Frozen rows handed to callers outside `storage/`.

A peewee instance is mutable and lazily loads relations on whatever thread touches it, and
pykka's futures do not copy what they carry; so nothing outside `storage/` ever sees one.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class StorageRow:
    id: int
    name: str
    type: str
    path: str
    config: dict = field(default_factory=dict)
    client_config: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PreparationRow:
    id: int
    name: str
    max_size: int
    piece_size: int
    min_piece_size: int
    no_inline: bool
    no_dag: bool
    delete_after_export: bool


@dataclass(frozen=True, slots=True)
class AttachmentRow:
    """A source attachment with everything a job needs to run."""

    id: int
    preparation: PreparationRow
    source: StorageRow
    outputs: tuple[StorageRow, ...]


@dataclass(frozen=True, slots=True)
class FileRow:
    id: int
    path: str
    size: int
    last_modified_nano: int
    hash: str
    cid: bytes | None
    directory_id: int | None
    attachment_id: int | None


@dataclass(frozen=True, slots=True)
class RangeRow:
    id: int
    offset: int
    length: int
    cid: bytes | None
    job_id: int | None
    file: FileRow


@dataclass(frozen=True, slots=True)
class JobRow:
    id: int
    type: str
    state: str
    attempts: int
    worker_id: str | None
    attachment_id: int | None
    error_message: str = ""
    claimed_at: dt.datetime | None = None
    attachment: AttachmentRow | None = None   # loaded by claim_job
    ranges: tuple[RangeRow, ...] = ()          # pack jobs only, in range-id order
    # Added by the storage layer (defaults keep older constructors working).
    error_stack_trace: str = ""
    not_before: dt.datetime | None = None
    progress_bytes: int = 0
    total_bytes: int = 0


@dataclass(frozen=True, slots=True)
class WorkerRow:
    id: str
    hostname: str
    pid: int
    type: str
    last_heartbeat: dt.datetime
    started_at: dt.datetime
