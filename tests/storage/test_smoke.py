from storage.models import Job, JobState


def test_schema_has_jobs_table_and_foreign_keys_on(db):
    assert Job.select().count() == 0
    if db.is_sqlite:
        assert db.pw.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.pw.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert JobState.READY == "ready"
