"""Refuse directory layouts that cannot work: a database file or an output inside a source.

A source is scanned, then its files are read again when packed; a file that changes in
between fails its pack job ("file has been modified"). The SQLite database (and its WAL)
changes all the time, and the CAR files written into an output inside a source would be
packed again by the next scan. `ez-prep . --output ./pieces` run from the data directory
hits both, so the check runs before anything is created.
"""
from __future__ import annotations

import os
from typing import Iterable

from cli.app import fail
from storage.db import parse_url


def _inside(path: str, directory: str) -> bool:
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def sqlite_file(url: str) -> str | None:
    """The database file of a `sqlite:///` URL (None for PostgreSQL or `:memory:`)."""
    dialect, kwargs = parse_url(url)
    name = kwargs.get("database", "")
    if dialect != "sqlite" or not name or name == ":memory:":
        return None
    return os.path.abspath(name)


def check_layout(db_url: str, sources: Iterable[str], outputs: Iterable[str]) -> None:
    """Fail (one line, exit 1) when the database file or an output lies inside a source.

    Args:
        db_url: the database URL in use.
        sources, outputs: absolute directory paths.
    """
    sources, db_file = list(sources), sqlite_file(db_url)
    for source in sources:
        if db_file is not None and _inside(db_file, source):
            fail(f"the database file {db_file} is inside the source {source}: it changes while "
                 "the source is packed; put it elsewhere (--database sqlite:///PATH)")
        for output in outputs:
            if _inside(output, source):
                fail(f"the output {output} is inside the source {source}: its CAR files would "
                     "be scanned and packed again; choose an output outside the source")
