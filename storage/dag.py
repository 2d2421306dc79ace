"""The directory queries of the DAG: directory update during pack (SPEC §8.1) and DagGen
(SPEC §8.4).

Lost updates on `directories.data` (SPEC §10 #9) are prevented by `lock_root`: on
PostgreSQL every writer of an attachment's directories first locks its root directory row
(`FOR UPDATE`), so concurrent packs of one attachment update directories one after the
other, always in the same lock order (no deadlock). SQLite transactions are already
serialized (BEGIN IMMEDIATE).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from storage.db import Database
from storage.errors import NotFound
from storage.models import Directory
from storage.retry import retrying

PAGE = 500


@dataclass(frozen=True, slots=True)
class DirRow:
    id: int
    name: str
    parent_id: int | None
    cid: bytes | None
    data: bytes | None
    exported: bool


def _row(d: Directory) -> DirRow:
    return DirRow(d.id, d.name, d.parent_id, d.cid, d.data, d.exported)


def lock_root(db: Database, attachment_id: int) -> DirRow:
    """The attachment's root directory, row-locked on PostgreSQL for this transaction.

    Raises:
        NotFound: the attachment has no root directory.
    """
    query = (Directory.select()
             .where((Directory.attachment == attachment_id) & Directory.parent.is_null())
             .order_by(Directory.id).limit(1))
    if db.is_postgres:
        query = query.for_update()
    row = query.first()
    if row is None:
        raise NotFound(f"attachment {attachment_id} has no root directory")
    return _row(row)


@retrying
def root_directory(db: Database, attachment_id: int) -> DirRow | None:
    """The attachment's root directory (parent NULL), or None."""
    row = (Directory.select()
           .where((Directory.attachment == attachment_id) & Directory.parent.is_null())
           .order_by(Directory.id).first())
    return None if row is None else _row(row)


def load_directory(db: Database, dir_id: int) -> DirRow:
    """One directory row (inside the caller's transaction)."""
    row = Directory.get_or_none(Directory.id == dir_id)
    if row is None:
        raise NotFound(f"directory {dir_id} does not exist")
    return _row(row)


def save_directory(db: Database, dir_id: int, cid: bytes, data: bytes) -> None:
    """Store a directory's new node CID and state, to be exported again."""
    Directory.update(cid=cid, data=data, exported=False).where(Directory.id == dir_id).execute()


@retrying
def unexported_page(db: Database, attachment_id: int, after_id: int,
                    limit: int = PAGE) -> list[DirRow]:
    """Up to `limit` unexported directories of the attachment with id > after_id, by id."""
    return [_row(d) for d in Directory.select()
            .where((Directory.attachment == attachment_id) & (Directory.exported == False)  # noqa: E712
                   & (Directory.id > after_id))
            .order_by(Directory.id).limit(limit)]


def iter_unexported(db: Database, attachment_id: int) -> Iterator[DirRow]:
    """Every unexported directory of the attachment in id order, a page at a time."""
    last = 0
    while True:
        page = unexported_page(db, attachment_id, last)
        if not page:
            return
        yield from page
        last = page[-1].id


def mark_exported(db: Database, visited: Sequence[tuple[int, bytes | None]]) -> list[int]:
    """Mark visited directories exported when unchanged since read; return the ids that
    changed meanwhile (left unexported for the next run).

    A directory read with no CID (it never got a file: an empty directory) is marked only
    if it still has none, so it is not visited again and again (SPEC §10 #25).
    """
    changed = []
    for dir_id, cid in visited:
        cond = Directory.id == dir_id
        if cid is None:
            cond &= Directory.cid.is_null() & Directory.data.is_null()
        else:
            cond &= Directory.cid == cid
        if Directory.update(exported=True).where(cond).execute() != 1:
            changed.append(dir_id)
    return changed
