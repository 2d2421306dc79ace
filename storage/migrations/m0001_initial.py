"""Migration 1: the initial schema (SPEC §1 plus the pieceworks columns and indexes).

Frozen: these model copies must never change; later migrations alter what they created.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import uuid
from typing import Any

import peewee as pw

from storage.db import Database

VERSION = 1


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class JobState:
    READY = "ready"


class PieceType:
    DATA = "data"


class CidField(pw.BlobField):
    """Raw CID bytes. NULL and b"" both read back as None (the undefined CID)."""

    def db_value(self, value: bytes | None) -> Any:
        if not value:
            return None
        return super().db_value(bytes(value))

    def python_value(self, value: Any) -> bytes | None:
        if value is None:
            return None
        value = bytes(value)
        return value or None


class BytesField(pw.BlobField):
    """A blob that always reads back as `bytes` (psycopg2 gives memoryview)."""

    def python_value(self, value: Any) -> bytes | None:
        return None if value is None else bytes(value)


class JsonField(pw.TextField):
    """A JSON object stored as text: the same on both backends."""

    def db_value(self, value: Any) -> str:
        return json.dumps(value if value is not None else {}, sort_keys=True)

    def python_value(self, value: str | None) -> Any:
        return json.loads(value) if value else {}


class BaseModel(pw.Model):
    class Meta:
        database = None  # bound to the target database by up()
        legacy_table_names = False


class Global(BaseModel):
    key = pw.TextField(primary_key=True)
    value = pw.TextField()

    class Meta:
        table_name = "globals"


class SchemaMigration(BaseModel):
    """One row per applied schema version; the highest is the schema's version."""

    version = pw.IntegerField(primary_key=True)
    applied_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "schema_migrations"


class Worker(BaseModel):
    id = pw.CharField(max_length=63, primary_key=True)
    last_heartbeat = pw.DateTimeField(default=utcnow)
    hostname = pw.TextField(default="")
    type = pw.TextField(default="dataset_worker")
    pid = pw.IntegerField(default=0)
    started_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "workers"


class Lease(BaseModel):
    """A named lease (e.g. "reaper"): held by `holder` until `expires_at`."""

    name = pw.TextField(primary_key=True)
    holder = pw.TextField()
    expires_at = pw.DateTimeField()
    acquired_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "leases"


class Preparation(BaseModel):
    id = pw.AutoField()
    name = pw.TextField(unique=True)
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)
    delete_after_export = pw.BooleanField(default=False)
    max_size = pw.BigIntegerField()
    piece_size = pw.BigIntegerField()
    min_piece_size = pw.BigIntegerField(default=0)
    no_inline = pw.BooleanField(default=False)
    no_dag = pw.BooleanField(default=False)
    wallet_id = pw.IntegerField(null=True)

    class Meta:
        table_name = "preparations"


class Storage(BaseModel):
    id = pw.AutoField()
    name = pw.TextField(unique=True)
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)
    type = pw.TextField(default="local")
    path = pw.TextField()
    config = JsonField(default=dict)
    client_config = JsonField(default=dict)

    class Meta:
        table_name = "storages"


class SourceAttachment(BaseModel):
    id = pw.AutoField()
    preparation = pw.ForeignKeyField(Preparation, on_delete="CASCADE", index=False,
                                     column_name="preparation_id")
    storage = pw.ForeignKeyField(Storage, on_delete="CASCADE", column_name="storage_id",
                                 index=False)

    class Meta:
        table_name = "source_attachments"
        indexes = ((("preparation", "storage"), True),)


class OutputAttachment(BaseModel):
    id = pw.AutoField()
    preparation = pw.ForeignKeyField(Preparation, on_delete="CASCADE", index=False,
                                     column_name="preparation_id")
    storage = pw.ForeignKeyField(Storage, on_delete="CASCADE", column_name="storage_id",
                                 index=False)

    class Meta:
        table_name = "output_attachments"
        indexes = ((("preparation", "storage"), True),)


class Job(BaseModel):
    id = pw.BigAutoField()
    type = pw.TextField()
    state = pw.TextField(default=JobState.READY)
    error_message = pw.TextField(default="")
    error_stack_trace = pw.TextField(default="")
    worker = pw.ForeignKeyField(Worker, null=True, on_delete="SET NULL", column_name="worker_id",
                                index=False)
    attachment = pw.ForeignKeyField(SourceAttachment, null=True, on_delete="SET NULL",
                                    column_name="attachment_id", index=False)
    # Columns the invariants need (DESIGN.md, Storage).
    attempts = pw.IntegerField(default=0)             # incremented by every claim
    claimed_at = pw.DateTimeField(null=True)
    not_before = pw.DateTimeField(null=True)          # earliest next claim (retry backoff)
    progress_bytes = pw.BigIntegerField(default=0)
    total_bytes = pw.BigIntegerField(default=0)
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "jobs"


class Directory(BaseModel):
    id = pw.BigAutoField()
    cid = CidField(null=True)
    data = BytesField(null=True)
    name = pw.TextField(default="")
    exported = pw.BooleanField(default=False)
    attachment = pw.ForeignKeyField(SourceAttachment, null=True, on_delete="SET NULL",
                                    column_name="attachment_id", index=False)
    parent = pw.ForeignKeyField("self", null=True, on_delete="CASCADE", column_name="parent_id",
                                index=False)

    class Meta:
        table_name = "directories"


class File(BaseModel):
    id = pw.BigAutoField()
    cid = CidField(null=True)
    path = pw.TextField()
    hash = pw.TextField(default="")
    size = pw.BigIntegerField()
    last_modified_nano = pw.BigIntegerField(default=0)
    attachment = pw.ForeignKeyField(SourceAttachment, null=True, on_delete="SET NULL",
                                    column_name="attachment_id", index=False)
    directory = pw.ForeignKeyField(Directory, null=True, on_delete="CASCADE",
                                   column_name="directory_id", index=False)

    class Meta:
        table_name = "files"


class FileRange(BaseModel):
    id = pw.BigAutoField()
    offset = pw.BigIntegerField()
    length = pw.BigIntegerField()
    cid = CidField(null=True)
    job = pw.ForeignKeyField(Job, null=True, on_delete="SET NULL", column_name="job_id",
                             index=False)
    file = pw.ForeignKeyField(File, on_delete="CASCADE", column_name="file_id", index=False)

    class Meta:
        table_name = "file_ranges"


class Car(BaseModel):
    id = pw.AutoField()
    created_at = pw.DateTimeField(default=utcnow)
    piece_type = pw.TextField(default=PieceType.DATA)
    piece_cid = CidField(null=True)
    piece_size = pw.BigIntegerField()
    root_cid = CidField(null=True)
    file_size = pw.BigIntegerField()
    min_piece_size_padding = pw.BigIntegerField(default=0)
    storage = pw.ForeignKeyField(Storage, null=True, on_delete="SET NULL",
                                 column_name="storage_id", index=False)
    storage_path = pw.TextField(default="")
    num_of_files = pw.BigIntegerField(default=0)
    preparation = pw.ForeignKeyField(Preparation, null=True, on_delete="SET NULL",
                                     column_name="preparation_id", index=False)
    attachment = pw.ForeignKeyField(SourceAttachment, null=True, on_delete="SET NULL",
                                    column_name="attachment_id", index=False)
    job = pw.ForeignKeyField(Job, null=True, on_delete="SET NULL", column_name="job_id",
                             index=False)

    class Meta:
        table_name = "cars"


class CarBlock(BaseModel):
    id = pw.BigAutoField()
    cid = CidField(null=True)
    car_offset = pw.BigIntegerField()
    car_block_length = pw.IntegerField()
    varint = BytesField()
    raw_block = BytesField(null=True)
    file_offset = pw.BigIntegerField(default=0)
    car = pw.ForeignKeyField(Car, null=True, on_delete="SET NULL", column_name="car_id",
                             index=False)
    file = pw.ForeignKeyField(File, null=True, on_delete="SET NULL", column_name="file_id",
                              index=False)

    class Meta:
        table_name = "car_blocks"


# Named indexes of SPEC §1.3. Every nullable FK that marks an orphan is indexed.
INDEXES: list[tuple[type[BaseModel], str, tuple[str, ...]]] = [
    (Job, "job_type_state", ("type", "state")),
    (Job, "idx_jobs_worker_id", ("worker",)),
    (Job, "idx_jobs_attachment_id", ("attachment",)),
    (SourceAttachment, "idx_source_attachments_storage_id", ("storage",)),
    (OutputAttachment, "idx_output_attachments_storage_id", ("storage",)),
    (File, "idx_files_path", ("path",)),
    (File, "idx_files_attachment_id", ("attachment",)),
    (File, "idx_files_directory_id", ("directory",)),
    (Directory, "directory_source_parent", ("attachment", "parent")),
    (Directory, "idx_directories_parent_id", ("parent",)),
    (FileRange, "idx_file_ranges_job_id", ("job",)),
    (FileRange, "idx_file_ranges_file_id", ("file",)),
    (Car, "idx_cars_piece_cid", ("piece_cid",)),
    (Car, "idx_cars_storage_id", ("storage",)),
    (Car, "idx_cars_preparation_id", ("preparation",)),
    (Car, "idx_cars_attachment_id", ("attachment",)),
    (Car, "idx_cars_job_id", ("job",)),
    (CarBlock, "idx_car_blocks_cid", ("cid",)),
    (CarBlock, "idx_car_blocks_car_id", ("car",)),
    (CarBlock, "idx_car_blocks_file_id", ("file",)),
]

for _model, _name, _fields in INDEXES:
    _model.add_index(pw.ModelIndex(_model, [getattr(_model, f) for f in _fields], name=_name))

# Not in SPEC §1.3 (pieceworks addition): the claim's candidates, so that finding the lowest
# claimable id of a type is an index scan instead of a sort of every ready job. The claim
# query repeats this WHERE term verbatim, which is what lets SQLite use a partial index.
CLAIMABLE_WHERE = ("worker_id IS NULL AND attachment_id IS NOT NULL "
                   "AND state IN ('ready', 'processing')")
Job.add_index(pw.ModelIndex(Job, [Job.type, Job.id], name="idx_jobs_claimable",
                            where=pw.SQL(CLAIMABLE_WHERE)))

MODELS: list[type[BaseModel]] = [
    Global, SchemaMigration, Worker, Lease, Preparation, Storage, SourceAttachment,
    OutputAttachment, Job, Directory, File, FileRange, Car, CarBlock,
]


def up(db: Database) -> None:
    """Create every table and index of version 1 (inside the caller's transaction)."""
    with db.pw.bind_ctx(MODELS):
        db.pw.create_tables(MODELS, safe=True)
        for key, value in (("instance_id", str(uuid.uuid4())),
                           ("salt", base64.b64encode(os.urandom(8)).decode())):
            Global.insert(key=key, value=value).on_conflict_ignore().execute()
