"""Numbered schema migrations: `mNNNN_<what>.py`, each with `VERSION` and `up(db)`.

A migration uses its own frozen copies of the models (or its own SQL), never the live ones
in `storage.models`, so that it keeps producing the same schema after the models change.
Migration 1 creates the initial schema. `storage.schema` runs the migrations a database
lacks, in order, each in its own transaction together with its `schema_migrations` row.

To change the schema: add `mNNNN_<what>.py` with the next VERSION, change the live models to
match, and raise `storage.schema.SCHEMA_VERSION`. tests/storage/test_schema.py checks that
`init` and replaying every migration give the same tables, columns and indexes.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

from storage.db import Database


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: Callable[[Database], None]


def all_migrations() -> list[Migration]:
    """Every migration in this package, by version (versions must be 1, 2, 3, … in order)."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("m"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append(Migration(module.VERSION, info.name, module.up))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions are not 1..N: {[m.version for m in found]}")
    return found
