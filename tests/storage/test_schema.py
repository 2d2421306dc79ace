"""Schema creation, migration and version checks, on both backends."""
from __future__ import annotations

import threading
import uuid

import pytest

from storage import schema
from storage.db import Database, connect
from storage.errors import SchemaTooNew, SchemaTooOld
from storage.models import Global, SchemaMigration
from tests.conftest import PG_URL_ENV, _admin, _with_dbname, drop_pg_database

# SPEC §1.2, plus jobs.worker_id's SET NULL: (table, column) → (parent table, ON DELETE).
SPEC_FOREIGN_KEYS = {
    ("source_attachments", "preparation_id"): ("preparations", "CASCADE"),
    ("source_attachments", "storage_id"): ("storages", "CASCADE"),
    ("output_attachments", "preparation_id"): ("preparations", "CASCADE"),
    ("output_attachments", "storage_id"): ("storages", "CASCADE"),
    ("jobs", "worker_id"): ("workers", "SET NULL"),
    ("jobs", "attachment_id"): ("source_attachments", "SET NULL"),
    ("files", "attachment_id"): ("source_attachments", "SET NULL"),
    ("files", "directory_id"): ("directories", "CASCADE"),
    ("file_ranges", "file_id"): ("files", "CASCADE"),
    ("file_ranges", "job_id"): ("jobs", "SET NULL"),
    ("directories", "attachment_id"): ("source_attachments", "SET NULL"),
    ("directories", "parent_id"): ("directories", "CASCADE"),
    ("cars", "storage_id"): ("storages", "SET NULL"),
    ("cars", "preparation_id"): ("preparations", "SET NULL"),
    ("cars", "attachment_id"): ("source_attachments", "SET NULL"),
    ("cars", "job_id"): ("jobs", "SET NULL"),
    ("car_blocks", "car_id"): ("cars", "SET NULL"),
    ("car_blocks", "file_id"): ("files", "SET NULL"),
}


def foreign_keys(db: Database) -> dict[tuple[str, str], tuple[str, str]]:
    """Every FK of the schema with its ON DELETE action."""
    out = {}
    if db.is_sqlite:
        for table in db.pw.get_tables():
            for row in db.pw.execute_sql(f'PRAGMA foreign_key_list("{table}")').fetchall():
                out[(table, row[3])] = (row[2], row[6])
        return out
    rows = db.pw.execute_sql("""
        SELECT kcu.table_name, kcu.column_name, ccu.table_name, rc.delete_rule
        FROM information_schema.referential_constraints rc
        JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = rc.constraint_name
        JOIN information_schema.constraint_column_usage ccu
             ON ccu.constraint_name = rc.constraint_name
        WHERE kcu.table_schema = 'public'""").fetchall()
    return {(t, c): (p, rule) for t, c, p, rule in rows}


def snapshot(db: Database) -> dict:
    """Tables, columns, indexes and foreign keys of the database, comparable across DBs."""
    tables = {}
    for table in sorted(db.pw.get_tables()):
        columns = sorted((c.name, c.data_type.lower(), c.null, c.primary_key)
                         for c in db.pw.get_columns(table))
        indexes = sorted((i.name, tuple(i.columns), i.unique, i.sql) for i in
                         db.pw.get_indexes(table))
        tables[table] = {"columns": columns, "indexes": indexes}
    return {"tables": tables, "foreign_keys": foreign_keys(db)}


@pytest.fixture
def empty_url(db_url, tmp_path):
    """The URL of an empty database on the same backend as `db_url`."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    import os
    name = f"pw_empty_{uuid.uuid4().hex[:10]}"
    conn = _admin(os.environ[PG_URL_ENV])
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    url = _with_dbname(os.environ[PG_URL_ENV], name)
    yield url
    drop_pg_database(url)


def test_init_and_replaying_every_migration_give_the_same_schema(db_url, empty_url):
    replayed = connect(empty_url)
    assert schema.schema_version(replayed) == 0
    assert schema.upgrade_schema(replayed) == schema.SCHEMA_VERSION
    from_migrations = snapshot(replayed)
    replayed.close()
    created = connect(db_url)  # initialised by init_schema in the fixture
    from_init = snapshot(created)
    created.close()
    assert from_migrations == from_init
    assert "jobs" in from_init["tables"] and "leases" in from_init["tables"]
    job_indexes = {i[0] for i in from_init["tables"]["jobs"]["indexes"]}
    assert {"job_type_state", "idx_jobs_claimable", "idx_jobs_worker_id"} <= job_indexes


def test_every_foreign_key_has_the_on_delete_action_of_spec(db):
    fks = foreign_keys(db)
    assert {k: v for k, v in fks.items() if k in SPEC_FOREIGN_KEYS} == SPEC_FOREIGN_KEYS
    assert set(fks) == set(SPEC_FOREIGN_KEYS)


def test_every_foreign_key_column_is_indexed(db):
    for (table, column) in SPEC_FOREIGN_KEYS:
        leading = {i.columns[0] for i in db.pw.get_indexes(table)}
        assert column in leading, (table, column)


def test_init_and_upgrade_are_idempotent(db):
    assert schema.init_schema(db) == schema.SCHEMA_VERSION
    assert schema.upgrade_schema(db) == schema.SCHEMA_VERSION
    assert schema.init_schema(db) == schema.SCHEMA_VERSION
    assert SchemaMigration.select().count() == 1
    assert {g.key for g in Global.select()} == {"instance_id", "salt"}
    schema.check_schema(db)


def test_check_schema_refuses_an_older_or_newer_schema(db, empty_url):
    SchemaMigration.insert(version=schema.SCHEMA_VERSION + 1).execute()
    with pytest.raises(SchemaTooNew, match="upgrade pieceworks"):
        schema.check_schema(db)
    with pytest.raises(SchemaTooNew):
        schema.upgrade_schema(db)
    db.close()
    empty = connect(empty_url)
    with pytest.raises(SchemaTooOld, match="db upgrade"):
        schema.check_schema(empty)
    empty.close()


def test_concurrent_inits_of_an_empty_database_create_the_schema_once(db_url, empty_url):
    target = connect(empty_url)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        try:
            barrier.wait(10)
            schema.init_schema(target)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            target.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert schema.schema_version(target) == schema.SCHEMA_VERSION
    assert SchemaMigration.select().count() == 1
    assert Global.select().count() == 2
    target.close()
