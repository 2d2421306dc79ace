"""Loading a job with everything it needs to run, as frozen rows, in few round trips.

This is the hot path of every claim, so it uses plain SQL with fixed column lists (the
peewee query builder costs about a millisecond per claim in SQL generation alone). Column
values go through the models' fields' `python_value`, so types match what the models give
(datetimes from SQLite text, bytes from PostgreSQL memoryview, JSON config).
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from storage.db import Database
from storage.models import File, FileRange, Job
from storage.rows import (AttachmentRow, FileRow, JobRow, PreparationRow, RangeRow,
                          StorageRow)

JOB_COLUMNS = ("id", "type", "state", "attempts", "worker_id", "attachment_id",
               "error_message", "claimed_at", "error_stack_trace", "not_before",
               "progress_bytes", "total_bytes")
PREP_COLUMNS = ("id", "name", "max_size", "piece_size", "min_piece_size", "no_inline",
                "no_dag", "delete_after_export")
STORAGE_COLUMNS = ("id", "name", "type", "path", "config", "client_config")

_to_dt = Job.claimed_at.python_value


def select_list(alias: str, columns: Sequence[str]) -> str:
    """`alias.c1, alias.c2, …` for a SELECT."""
    return ", ".join(f"{alias}.{c}" for c in columns)


def _param(db: Database) -> str:
    return "%s" if db.is_postgres else "?"


def job_from(values: Sequence[Any], attachment: AttachmentRow | None = None,
             ranges: tuple[RangeRow, ...] = ()) -> JobRow:
    """A JobRow from values in JOB_COLUMNS order."""
    (jid, jtype, state, attempts, worker_id, attachment_id, message, claimed_at, trace,
     not_before, progress, total) = values
    return JobRow(id=jid, type=jtype, state=state, attempts=attempts, worker_id=worker_id,
                  attachment_id=attachment_id, error_message=message or "",
                  claimed_at=_to_dt(claimed_at), attachment=attachment, ranges=ranges,
                  error_stack_trace=trace or "", not_before=_to_dt(not_before),
                  progress_bytes=progress or 0, total_bytes=total or 0)


def _json(value: Any) -> dict:
    if isinstance(value, dict):
        return dict(value)
    return json.loads(value) if value else {}


def storage_from(values: Sequence[Any]) -> StorageRow:
    sid, name, stype, path, config, client_config = values
    return StorageRow(id=sid, name=name, type=stype, path=path, config=_json(config),
                      client_config=_json(client_config))


def preparation_from(values: Sequence[Any]) -> PreparationRow:
    pid, name, max_size, piece_size, min_piece, no_inline, no_dag, dae = values
    return PreparationRow(id=pid, name=name, max_size=max_size, piece_size=piece_size,
                          min_piece_size=min_piece, no_inline=bool(no_inline),
                          no_dag=bool(no_dag), delete_after_export=bool(dae))


def attachment_join(alias: str) -> str:
    """FROM-clause joins that add `sa`, `p`, `s` for the attachment of job alias `alias`."""
    return (f" LEFT JOIN source_attachments sa ON sa.id = {alias}.attachment_id"
            " LEFT JOIN preparations p ON p.id = sa.preparation_id"
            " LEFT JOIN storages s ON s.id = sa.storage_id")


ATTACHMENT_SELECT = ("sa.id, " + select_list("p", PREP_COLUMNS) + ", "
                     + select_list("s", STORAGE_COLUMNS))
ATTACHMENT_WIDTH = 1 + len(PREP_COLUMNS) + len(STORAGE_COLUMNS)


def attachment_from(db: Database, values: Sequence[Any],
                    outputs: Sequence[Sequence[Any]] | None = None) -> AttachmentRow | None:
    """An AttachmentRow from ATTACHMENT_SELECT values (None when the join found none).

    `outputs`: the output storages' values if already fetched (PostgreSQL's claim gets them
    as JSON in the same statement); otherwise they are loaded.
    """
    if values[0] is None or values[1] is None:
        return None
    prep = preparation_from(values[1:1 + len(PREP_COLUMNS)])
    source = storage_from(values[1 + len(PREP_COLUMNS):])
    outs = (tuple(storage_from(o) for o in outputs) if outputs is not None
            else load_outputs(db, prep.id))
    return AttachmentRow(id=values[0], preparation=prep, source=source, outputs=outs)


# PostgreSQL only: the output storages of `p` as one JSON array, so the claim needs no
# second round trip. (SQLite has no ordered JSON aggregate, and no round trips to save.)
PG_OUTPUTS_JSON = (
    "COALESCE((SELECT json_agg(json_build_array(" + select_list("o", STORAGE_COLUMNS)
    + ") ORDER BY o.id) FROM output_attachments oa JOIN storages o ON o.id = oa.storage_id"
    " WHERE oa.preparation_id = p.id), '[]')")


def load_outputs(db: Database, preparation_id: int) -> tuple[StorageRow, ...]:
    """The output storages of a preparation, by storage id."""
    p = _param(db)
    sql = (f"SELECT {select_list('s', STORAGE_COLUMNS)} FROM output_attachments oa "
           f"JOIN storages s ON s.id = oa.storage_id WHERE oa.preparation_id = {p} "
           "ORDER BY s.id")
    return tuple(storage_from(r) for r in db.pw.execute_sql(sql, (preparation_id,)).fetchall())


_FILE_COLUMNS = ("id", "path", "size", "last_modified_nano", "hash", "cid", "directory_id",
                 "attachment_id")
_RANGE_COLUMNS = ("id", "offset", "length", "cid", "job_id")
_cid = FileRange.cid.python_value
_file_cid = File.cid.python_value


def load_ranges(db: Database, job_id: int) -> tuple[RangeRow, ...]:
    """A pack job's ranges with their files, in range-id order (the order of the CAR)."""
    p = _param(db)
    cols = (", ".join(f'r."{c}"' for c in _RANGE_COLUMNS) + ", "
            + ", ".join(f'f."{c}"' for c in _FILE_COLUMNS))
    sql = (f"SELECT {cols} FROM file_ranges r JOIN files f ON f.id = r.file_id "
           f"WHERE r.job_id = {p} ORDER BY r.id")
    out = []
    for row in db.pw.execute_sql(sql, (job_id,)).fetchall():
        rid, offset, length, rcid, rjob = row[:5]
        fid, path, size, mtime, fhash, fcid, dir_id, att_id = row[5:]
        out.append(RangeRow(id=rid, offset=offset, length=length, cid=_cid(rcid), job_id=rjob,
                            file=FileRow(id=fid, path=path, size=size,
                                         last_modified_nano=mtime, hash=fhash,
                                         cid=_file_cid(fcid), directory_id=dir_id,
                                         attachment_id=att_id)))
    return tuple(out)


# PostgreSQL only: a pack job's ranges with their files as one JSON array, in range-id
# order, so the claim of a pack job is still one round trip. CIDs travel as hex.
PG_RANGES_JSON = (
    "CASE WHEN j.type = 'pack' THEN COALESCE((SELECT json_agg(json_build_array("
    + ", ".join(f'r."{c}"' if c != "cid" else "encode(r.cid, 'hex')" for c in _RANGE_COLUMNS)
    + ", "
    + ", ".join(f'f."{c}"' if c != "cid" else "encode(f.cid, 'hex')" for c in _FILE_COLUMNS)
    + ") ORDER BY r.id) FROM file_ranges r JOIN files f ON f.id = r.file_id"
    " WHERE r.job_id = j.id), '[]') END")


def _hex(value: str | None) -> bytes | None:
    return bytes.fromhex(value) if value else None


def ranges_from_json(items: Sequence[Sequence[Any]]) -> tuple[RangeRow, ...]:
    """RangeRows from PG_RANGES_JSON's array."""
    out = []
    for item in items:
        rid, offset, length, rcid, rjob = item[:5]
        fid, path, size, mtime, fhash, fcid, dir_id, att_id = item[5:]
        out.append(RangeRow(id=rid, offset=offset, length=length, cid=_hex(rcid), job_id=rjob,
                            file=FileRow(id=fid, path=path, size=size,
                                         last_modified_nano=mtime, hash=fhash,
                                         cid=_hex(fcid), directory_id=dir_id,
                                         attachment_id=att_id)))
    return tuple(out)


def finish_row(db: Database, values: Sequence[Any], *, ranges: bool = True) -> JobRow:
    """A JobRow from JOB_COLUMNS + ATTACHMENT_SELECT (+ PG_OUTPUTS_JSON) values.

    With `ranges`, a pack job's ranges are loaded too.
    """
    job_values = values[:len(JOB_COLUMNS)]
    rest = values[len(JOB_COLUMNS):]
    outputs = rest[ATTACHMENT_WIDTH] if len(rest) > ATTACHMENT_WIDTH else None
    attachment = attachment_from(db, rest[:ATTACHMENT_WIDTH], outputs)
    loaded = load_ranges(db, job_values[0]) if ranges and job_values[1] == "pack" else ()
    return job_from(job_values, attachment, loaded)


def load_job_row(db: Database, job_id: int, *, ranges: bool = True) -> JobRow | None:
    """The job with attachment (preparation, source, outputs) and pack ranges; or None."""
    p = _param(db)
    sql = (f"SELECT {select_list('j', JOB_COLUMNS)}, {ATTACHMENT_SELECT} FROM jobs j"
           f"{attachment_join('j')} WHERE j.id = {p}")
    row = db.pw.execute_sql(sql, (job_id,)).fetchone()
    return finish_row(db, row, ranges=ranges) if row else None
