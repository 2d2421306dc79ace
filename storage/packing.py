"""The result writes of a pack job (SPEC §7.6), run inside the job's completion.

`write_pack_result` is called by the outcome's `apply`, itself run by
`storage.jobs.complete_job` in the transaction whose compare-and-set completed the job,
so every row below appears with the completion or not at all. It is safe to run again
for the same job (a restarted job): the job's previous Car rows and their car_blocks are
replaced, never duplicated.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

from storage.db import Database
from storage.models import Car, CarBlock, File, FileRange, PieceType

BLOCK_BATCH = 100   # 8 columns per row: far below SQLite's bound-parameter limit
ID_CHUNK = 500


class BlockRow(NamedTuple):
    """One car_blocks row before its car exists (SPEC §7.4)."""

    cid: bytes
    car_offset: int
    block_length: int
    varint: bytes
    raw_block: bytes | None
    file_offset: int
    file_id: int | None


@dataclass(slots=True)
class _FileInfo:
    """What the apply needs of a file row (size is corrected when it was unknown)."""

    path: str
    size: int
    directory_id: int | None


@dataclass(frozen=True)
class UpdatedFile:
    """A file whose CID became known in this job: what its directory needs."""

    file_id: int
    path: str
    directory_id: int | None
    cid: bytes
    size: int
    blocks: tuple[tuple[bytes, bytes], ...] = ()   # parent blocks of a split file


@dataclass
class PackRecord:
    """Everything a finished pack stream produced (ranges as (id, file id, cid, read))."""

    job_id: int
    attachment_id: int
    preparation_id: int
    storage_id: int | None
    storage_path: str
    root_cid: bytes | None
    piece: Any                          # dataprep.piece.Piece
    ranges: list[tuple[int, int, bytes | None, int]]
    blocks: list[BlockRow] = field(default_factory=list)
    update_dag: bool = True
    piece_type: str = PieceType.DATA


def write_pack_result(db: Database, rec: PackRecord,
                      assemble: Callable[[Sequence[tuple[bytes, int]]], Any]
                      ) -> list[UpdatedFile]:
    """Write range and file CIDs, complete split files, insert the Car and car_blocks.

    Args:
        assemble: builds a split file's root from (range CID, length) links and returns
            an object with `root_cid` and `blocks` (dataprep.unixfs.assemble_file).

    Returns:
        The files whose CID was set (for the directory update), in range order.
    """
    file_ids = list(dict.fromkeys(fid for _, fid, _, _ in rec.ranges))
    files: dict[int, _FileInfo] = {}
    for i in range(0, len(file_ids), ID_CHUNK):
        # Plain tuples: building a model instance per file was a good part of the apply.
        query = (File.select(File.id, File.path, File.size, File.directory)
                 .where(File.id.in_(file_ids[i:i + ID_CHUNK])).tuples())
        for fid, path, size, directory_id in query:
            files[fid] = _FileInfo(path, size, directory_id)
    # 1. Unknown sizes become the bytes read, on the file and all its ranges.
    for _, fid, cid, read in rec.ranges:
        f = files[fid]
        if f.size < 0 and cid is not None:
            File.update(size=read).where(File.id == fid).execute()
            FileRange.update(length=read).where(FileRange.file == fid).execute()
            f.size = read
    # 2. Range CIDs; whole-file ranges give the file its CID.
    updated: dict[int, UpdatedFile] = {}
    split: list[int] = []
    range_ids = [r[0] for r in rec.ranges]
    lengths: dict[int, tuple[int, int]] = {}
    for i in range(0, len(range_ids), ID_CHUNK):
        query = (FileRange.select(FileRange.id, FileRange.offset, FileRange.length)
                 .where(FileRange.id.in_(range_ids[i:i + ID_CHUNK])).tuples())
        lengths.update((rid, (offset, length)) for rid, offset, length in query)
    range_cids: list[tuple[int, bytes | None]] = []
    file_cids: list[tuple[int, bytes | None]] = []
    for range_id, fid, cid, _ in rec.ranges:
        range_cids.append((range_id, cid))
        f = files[fid]
        offset, length = lengths[range_id]
        if cid is None:
            continue  # skipped: the file gets no CID and no directory entry
        if offset == 0 and length == f.size:
            file_cids.append((fid, cid))
            updated[fid] = UpdatedFile(fid, f.path, f.directory_id, cid, f.size)
        elif fid not in split:
            split.append(fid)
    set_cids(db, FileRange, range_cids)
    set_cids(db, File, file_cids)
    # 3. A split file is complete once every range has a CID, whichever job packs last.
    for fid in split:
        ranges = list(FileRange.select(FileRange.cid, FileRange.length)
                      .where(FileRange.file == fid).order_by(FileRange.offset).tuples())
        if any(cid is None for cid, _ in ranges):
            continue
        f = files[fid]
        dag = assemble([(cid, length) for cid, length in ranges])
        File.update(cid=dag.root_cid).where(File.id == fid).execute()
        updated[fid] = UpdatedFile(fid, f.path, f.directory_id, dag.root_cid, f.size,
                                   tuple(dag.blocks))
    # 4. The Car and its blocks, replacing those of an earlier run of this job.
    insert_car(db, rec, num_of_files=len(updated), replace_job=True)
    return list(updated.values())


def insert_car(db: Database, rec: PackRecord, *, num_of_files: int,
               replace_job: bool) -> int:
    """Insert the Car row of `rec` and its car_blocks (batches); returns the car id."""
    if replace_job:
        old = [c.id for c in Car.select(Car.id).where(Car.job == rec.job_id)]
        if old:
            CarBlock.delete().where(CarBlock.car.in_(old)).execute()
            Car.delete().where(Car.id.in_(old)).execute()
    piece = rec.piece
    car_id = Car.insert(
        piece_type=rec.piece_type, piece_cid=piece.piece_cid, piece_size=piece.piece_size,
        root_cid=rec.root_cid, file_size=piece.file_size,
        min_piece_size_padding=piece.padding, storage=rec.storage_id,
        storage_path=rec.storage_path, num_of_files=num_of_files,
        preparation=rec.preparation_id, attachment=rec.attachment_id,
        job=rec.job_id if rec.piece_type == PieceType.DATA else None).execute()
    # Written out rather than built by peewee: for a job of many small files, peewee's
    # per-value SQL generation cost more than the database's own work.
    blob = CarBlock.cid.db_value
    raw = CarBlock.raw_block.db_value
    for i in range(0, len(rec.blocks), BLOCK_BATCH):
        chunk = rec.blocks[i:i + BLOCK_BATCH]
        params: list[object] = []
        for b in chunk:
            params += (blob(b.cid), b.car_offset, b.block_length, raw(b.varint),
                       raw(b.raw_block), b.file_offset, b.file_id, car_id)
        db.pw.execute_sql(_insert_blocks_sql(db, len(chunk)), params)
    return car_id


@functools.lru_cache(maxsize=16)
def _values_sql(param: str, columns: int, rows: int) -> str:
    one = "(" + ", ".join([param] * columns) + ")"
    return ", ".join([one] * rows)


def _insert_blocks_sql(db: Database, rows: int) -> str:
    return (f"INSERT INTO {CarBlock._meta.table_name} (cid, car_offset, car_block_length, "
            "varint, raw_block, file_offset, file_id, car_id) "
            f"VALUES {_values_sql(db.pw.param, 8, rows)}")


def set_cids(db: Database, model: type, pairs: Sequence[tuple[int, bytes | None]]) -> None:
    """`UPDATE <model> SET cid = ? WHERE id = ?` for every (id, cid), in few round trips:
    one executemany on SQLite (no round trips at all), one UPDATE ... FROM (VALUES ...)
    per ID_CHUNK rows on PostgreSQL."""
    if not pairs:
        return
    table = model._meta.table_name
    blob = model.cid.db_value
    if db.is_sqlite:
        cursor = db.pw.cursor()
        cursor.executemany(f"UPDATE {table} SET cid = ? WHERE id = ?",
                           [(blob(cid), row_id) for row_id, cid in pairs])
        return
    for i in range(0, len(pairs), ID_CHUNK):
        chunk = pairs[i:i + ID_CHUNK]
        values = ", ".join(["(%s::bigint, %s::bytea)"] * len(chunk))
        params: list[object] = []
        for row_id, cid in chunk:
            params += (row_id, blob(cid))
        db.pw.execute_sql(f"UPDATE {table} AS t SET cid = v.cid FROM (VALUES {values}) "
                          "AS v(id, cid) WHERE t.id = v.id", params)
