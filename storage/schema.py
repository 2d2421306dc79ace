"""Creating and upgrading the schema (placeholder: version 1 only; see storage/migrations)."""
from __future__ import annotations

from storage.db import Database
from storage.models import ALL_MODELS, SchemaMigration

SCHEMA_VERSION = 1


def init_schema(db: Database) -> None:
    """Create every table and index if missing, and record the schema version."""
    with db.atomic():
        db.pw.create_tables(ALL_MODELS, safe=True)
        SchemaMigration.insert(version=SCHEMA_VERSION).on_conflict_ignore().execute()
