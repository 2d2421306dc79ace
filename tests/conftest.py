"""Fixtures shared by every tier: a fresh database on each backend.

`db` is parametrised over `sqlite` (a WAL file under tmp_path) and `postgres` (a database
cloned, per test, from a template migrated once per run). The postgres case needs
PIECEWORKS_TEST_PG_URL; without it the case is skipped, except under CI, where it fails.
"""
from __future__ import annotations

import os
import uuid
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from storage.db import Database, connect
from storage.schema import init_schema

PG_URL_ENV = "PIECEWORKS_TEST_PG_URL"

# Settings must come from the test, never from the developer's shell.
for _key in [k for k in os.environ if k.startswith("PIECEWORKS_") and k != PG_URL_ENV]:
    del os.environ[_key]


def _pg_admin_url() -> str | None:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_URL_ENV} is not set, and CI must run the PostgreSQL tests")
        return None
    return url


def _with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def _admin(url: str):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    """A PostgreSQL database with the schema, to be cloned by each test; None without PG."""
    url = _pg_admin_url()
    if url is None:
        yield None
        return
    name = f"pw_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn = _admin(url)
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    template_url = _with_dbname(url, name)
    tdb = connect(template_url)
    init_schema(tdb)
    tdb.close()
    yield name
    conn = _admin(url)
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def make_pg_database(template: str) -> str:
    """Clone the template into a fresh database and return its URL."""
    url = os.environ[PG_URL_ENV]
    name = f"pw_test_{uuid.uuid4().hex[:12]}"
    conn = _admin(url)
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    conn.close()
    return _with_dbname(url, name)


def drop_pg_database(db_url: str) -> None:
    name = urlsplit(db_url).path.lstrip("/")
    conn = _admin(os.environ[PG_URL_ENV])
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path, pg_template) -> Iterator[str]:
    """The URL of a fresh, initialised database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'pieceworks.db'}"
        init_schema(connect(url))
        yield url
        return
    if pg_template is None:
        pytest.skip(f"{PG_URL_ENV} is not set")
    url = make_pg_database(pg_template)
    yield url
    drop_pg_database(url)


@pytest.fixture
def db(db_url) -> Iterator[Database]:
    """A connected Database on a fresh schema; closed afterwards."""
    database = connect(db_url)
    yield database
    database.close()
