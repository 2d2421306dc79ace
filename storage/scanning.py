"""The queries of a scan (SPEC §6): directories, file versions, ranges, pack jobs.

Writes are batched so a scan makes few round trips, and each batch stays far below
SQLite's bound-parameter limit (32766 on SQLite >= 3.32, 999 before) and PostgreSQL's
65535: `FILE_BATCH` files x 7 columns, `RANGE_BATCH` ranges x 4 columns, `ID_CHUNK` ids.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from storage.db import Database
from storage.models import Directory, File, FileRange, Job, JobState, JobType, utcnow
from storage.retry import retrying

FILE_BATCH = 100
RANGE_BATCH = 200
SCAN_BATCH = 500    # most files per record_files call (one transaction) in a scan
ID_CHUNK = 500
PAGE = 5000
CACHE_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class NewFile:
    """A listed file to record: escaped relative path, size, mtime ns, backend hash."""

    path: str
    size: int
    mtime_ns: int
    directory_id: int
    hash: str = ""


@retrying
def root_directory_id(db: Database, attachment_id: int) -> int:
    """The id of the attachment's root directory (name "", parent NULL); created if absent."""
    with db.atomic():
        row = (Directory.select(Directory.id)
               .where((Directory.attachment == attachment_id) & Directory.parent.is_null())
               .order_by(Directory.id).first())
        if row is not None:
            return row.id
        return Directory.insert(name="", attachment=attachment_id, parent=None).execute()


class DirectoryCache:
    """Per-scan map from escaped directory path ("" = root) to directory id (SPEC §6.3)."""

    def __init__(self, db: Database, attachment_id: int) -> None:
        self.db = db
        self.attachment_id = attachment_id
        self.ids: dict[str, int] = {"": root_directory_id(db, attachment_id)}

    @property
    def root_id(self) -> int:
        return self.ids[""]

    def ensure(self, dir_path: str) -> int:
        """The id of directory `dir_path` (escaped, `/`-separated), creating it and its
        ancestors as needed; each miss is one find-or-create transaction."""
        if dir_path in self.ids:
            return self.ids[dir_path]
        if len(self.ids) > CACHE_LIMIT:
            # Bound memory on huge trees: the scan is breadth-first, so old entries are
            # rarely needed again; a miss costs one query.
            root = self.ids[""]
            self.ids = {"": root}
        parent_path, _, name = dir_path.rpartition("/")
        parent_id = self.ensure(parent_path)
        dir_id = _find_or_create_directory(self.db, self.attachment_id, parent_id, name)
        self.ids[dir_path] = dir_id
        return dir_id


@retrying
def _find_or_create_directory(db: Database, attachment_id: int, parent_id: int,
                              name: str) -> int:
    # Plain SQL: a scan makes one of these per directory, and peewee's query building
    # cost more than the two statements.
    table, p = Directory._meta.table_name, db.pw.param
    with db.atomic():
        row = db.pw.execute_sql(f"SELECT id FROM {table} WHERE parent_id = {p} AND name = {p} "
                                "ORDER BY id LIMIT 1", (parent_id, name)).fetchone()
        if row is not None:
            return row[0]
        return db.pw.execute_sql(f"INSERT INTO {table} (name, exported, parent_id, "
                                 f"attachment_id) VALUES ({p}, {p}, {p}, {p}) RETURNING id",
                                 (name, False, parent_id, attachment_id)).fetchone()[0]


def split_ranges(size: int, split_size: int) -> list[tuple[int, int]]:
    """(offset, length) of a file's ranges (SPEC §6.4)."""
    if size <= 0:
        return [(0, size)]  # size 0: one empty range; size -1: one range of unknown length
    return [(off, min(split_size, size - off)) for off in range(0, size, split_size)]


@retrying
def record_files(db: Database, attachment_id: int, files: Sequence[NewFile],
                 split_size: int) -> int:
    """Insert the files that are new versions, with their ranges; return how many.

    A file "already exists" when a row has the same attachment, path and mtime, and the
    same size (when known) and hash (when known) (SPEC §6.2). Old versions are never
    touched. One transaction per call, so a crash leaves either the whole batch or none
    of it, and a rerun skips what was recorded.

    The statements are written out here rather than built by peewee: for a scan of
    many small files, peewee's per-value SQL generation cost more than the database.
    """
    if not files:
        return 0
    fresh: list[NewFile] = []
    with db.atomic():
        existing: dict[str, list[tuple[int, int, str]]] = {}
        paths = list({f.path for f in files})
        for i in range(0, len(paths), ID_CHUNK):
            chunk = paths[i:i + ID_CHUNK]
            cursor = db.pw.execute_sql(_select_existing_sql(db, len(chunk)),
                                       [attachment_id, *chunk])
            for path, mtime, size, hsh in cursor.fetchall():
                existing.setdefault(path, []).append((mtime, size, hsh))
        for f in files:
            if not any(_same(f, old) for old in existing.get(f.path, ())):
                fresh.append(f)
        if not fresh:
            return 0
        for i in range(0, len(fresh), FILE_BATCH):
            batch = fresh[i:i + FILE_BATCH]
            params: list[object] = []
            for f in batch:
                params += (f.path, f.size, f.mtime_ns, f.hash, attachment_id, f.directory_id)
            cursor = db.pw.execute_sql(_insert_files_sql(db, len(batch)), params)
            ids = {path: fid for fid, path in cursor.fetchall()}
            ranges: list[object] = []
            count = 0
            for f in batch:
                file_id = ids[f.path]
                for off, length in split_ranges(f.size, split_size):
                    ranges += (off, length, file_id)
                    count += 1
                    if count == RANGE_BATCH:
                        db.pw.execute_sql(_insert_ranges_sql(db, count), ranges)
                        ranges, count = [], 0
            if count:
                db.pw.execute_sql(_insert_ranges_sql(db, count), ranges)
    return len(fresh)


@functools.lru_cache(maxsize=64)
def _rows_sql(param: str, columns: int, rows: int) -> str:
    one = "(" + ", ".join([param] * columns) + ")"
    return ", ".join([one] * rows)


def _select_existing_sql(db: Database, n: int) -> str:
    p = db.pw.param
    return (f"SELECT path, last_modified_nano, size, hash FROM {File._meta.table_name} "
            f"WHERE attachment_id = {p} AND path IN ({', '.join([p] * n)})")


def _insert_files_sql(db: Database, rows: int) -> str:
    # cid is left NULL (the column default); RETURNING gives the ids in one round trip.
    return (f"INSERT INTO {File._meta.table_name} "
            "(path, size, last_modified_nano, hash, attachment_id, directory_id) "
            f"VALUES {_rows_sql(db.pw.param, 6, rows)} RETURNING id, path")


def _insert_ranges_sql(db: Database, rows: int) -> str:
    return (f'INSERT INTO {FileRange._meta.table_name} ("offset", length, file_id) '
            f"VALUES {_rows_sql(db.pw.param, 3, rows)}")


def _same(f: NewFile, old: tuple[int, int, str]) -> bool:
    mtime, size, hsh = old
    if mtime != f.mtime_ns:
        return False
    if f.hash and hsh != f.hash:
        return False
    if f.size >= 0 and size != f.size:
        return False
    return True


def iter_unassigned_ranges(db: Database, attachment_id: int) -> Iterator[tuple[int, int]]:
    """(range id, length) of every range of the attachment with no job, by id, paged so
    memory stays flat however many there are."""
    p = db.pw.param
    sql = (f"SELECT r.id, r.length FROM {FileRange._meta.table_name} r "
           f"JOIN {File._meta.table_name} f ON r.file_id = f.id "
           f"WHERE f.attachment_id = {p} AND r.job_id IS NULL AND r.id > {p} "
           f"ORDER BY r.id LIMIT {PAGE}")
    last = 0
    while True:
        page = db.pw.execute_sql(sql, (attachment_id, last)).fetchall()
        if not page:
            return
        yield from page
        last = page[-1][0]


@retrying
def create_pack_job(db: Database, attachment_id: int, range_ids: Iterable[int]) -> int:
    """Insert a `ready` pack job and assign the ranges to it (SPEC §6.5); returns its id.

    Only ranges still without a job are taken, so a rerun never steals a range.
    """
    ids = list(range_ids)
    with db.atomic():
        now = utcnow()
        job_id = Job.insert(type=JobType.PACK, state=JobState.READY,
                            attachment=attachment_id, created_at=now,
                            updated_at=now).execute()
        table = FileRange._meta.table_name
        if db.is_postgres and ids:
            # One statement whatever the number of ranges: the ids go as one array.
            db.pw.execute_sql(f"UPDATE {table} SET job_id = %s "
                              "WHERE id = ANY(%s) AND job_id IS NULL", (job_id, ids))
            return job_id
        for i in range(0, len(ids), ID_CHUNK):
            chunk = ids[i:i + ID_CHUNK]
            db.pw.execute_sql(f"UPDATE {table} SET job_id = ? WHERE id IN "
                              f"({', '.join('?' * len(chunk))}) AND job_id IS NULL",
                              [job_id, *chunk])
    return job_id
