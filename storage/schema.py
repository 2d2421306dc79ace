"""Creating, upgrading and checking the schema.

The schema's version is the highest `schema_migrations.version`; 0 means no schema yet.

- `init_schema` creates the current schema from the live models on an empty database, and
  upgrades a database of an earlier version instead. Running it again changes nothing.
- `upgrade_schema` applies, in order, each migration of `storage.migrations` the database
  lacks, each in its own transaction with its version row.
- `check_schema` refuses a database of another version.

Both writers are safe while workers run and while another process runs them too: every
step re-reads the version after taking a lock (PostgreSQL: a transaction-scoped advisory
lock; SQLite: the IMMEDIATE transaction's write lock), so each migration runs once. DDL is
transactional on both backends, so a failed migration leaves the previous version intact.
"""
from __future__ import annotations

import base64
import os
import uuid

from loguru import logger

from storage.db import Database
from storage.errors import SchemaTooNew, SchemaTooOld
from storage.migrations import all_migrations
from storage.models import ALL_MODELS, Global, SchemaMigration
from storage.retry import retrying

SCHEMA_VERSION = 1

# Any fixed 64-bit number; names the "schema migration" advisory lock in PostgreSQL.
_ADVISORY_LOCK_KEY = 0x7069_6563_6577_6B73 & 0x7FFF_FFFF_FFFF_FFFF


def _lock(db: Database) -> None:
    """Serialise schema writers (call inside the transaction)."""
    if db.is_postgres:
        db.pw.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
    # SQLite: BEGIN IMMEDIATE already took the database's write lock.


def _version(db: Database) -> int:
    if not db.pw.table_exists(SchemaMigration._meta.table_name):
        return 0
    row = db.pw.execute_sql("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


@retrying
def schema_version(db: Database) -> int:
    """The database's schema version; 0 when it has no schema."""
    return _version(db)


@retrying
def init_schema(db: Database) -> int:
    """Create the current schema on an empty database, or upgrade an older one.

    Returns the version afterwards.
    """
    with db.atomic():
        _lock(db)
        if _version(db) == 0:
            db.pw.create_tables(ALL_MODELS, safe=True)
            for key, value in (("instance_id", str(uuid.uuid4())),
                               ("salt", base64.b64encode(os.urandom(8)).decode())):
                Global.insert(key=key, value=value).on_conflict_ignore().execute()
            SchemaMigration.insert(version=SCHEMA_VERSION).on_conflict_ignore().execute()
            logger.bind(action="schema").debug("created schema version {} on {}",
                                              SCHEMA_VERSION, db.url)
            return SCHEMA_VERSION
    return upgrade_schema(db)


def upgrade_schema(db: Database) -> int:
    """Apply every migration the database lacks; returns the version afterwards.

    Raises:
        SchemaTooNew: the database is newer than this program.
    """
    for migration in all_migrations():
        if migration.version > SCHEMA_VERSION:
            break
        _apply(db, migration.version, migration.up)
    version = schema_version(db)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(f"database {db.url} has schema version {version}, this program "
                           f"knows up to {SCHEMA_VERSION}; upgrade pieceworks")
    return version


@retrying
def _apply(db: Database, version: int, up) -> None:
    with db.atomic():
        _lock(db)
        if _version(db) >= version:
            return
        up(db)
        SchemaMigration.insert(version=version).on_conflict_ignore().execute()
    logger.bind(action="schema").info("migrated {} to schema version {}", db.url, version)


def check_schema(db: Database) -> None:
    """Raise unless the database's schema is exactly this program's version.

    Raises:
        SchemaTooOld: older (or none); run `runner.py db upgrade`.
        SchemaTooNew: newer; upgrade pieceworks.
    """
    version = schema_version(db)
    if version < SCHEMA_VERSION:
        raise SchemaTooOld(f"database {db.url} has schema version {version}, this program "
                           f"needs {SCHEMA_VERSION}; run `runner.py db upgrade`")
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(f"database {db.url} has schema version {version}, this program "
                           f"knows up to {SCHEMA_VERSION}; upgrade pieceworks")
