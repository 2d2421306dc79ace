"""A database file or an output inside a source is refused before anything is created."""
from __future__ import annotations

from tests.cli.conftest import assert_one_line_error, run_subprocess


def make_source(tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "a.txt").write_text("a" * 100)
    return src


def test_ez_prep_of_the_working_directory_with_the_default_database_is_refused(tmp_path):
    # Regression: `ez-prep . --output ../cars` put ./pieceworks.db inside the source, and the
    # pack job failed with "file has been modified: pieceworks.db".
    src = make_source(tmp_path)
    result = run_subprocess("ez-prep", ".", "--output", str(tmp_path / "cars"), cwd=str(src))
    assert result.returncode == 1
    assert_one_line_error(result.stderr, f"the database file {src / 'pieceworks.db'} is inside "
                          f"the source {src}")
    assert sorted(p.name for p in src.iterdir()) == ["a.txt"]       # no database left behind


def test_ez_prep_into_an_output_inside_the_source_is_refused(tmp_path):
    src = make_source(tmp_path)
    result = run_subprocess("ez-prep", str(src), "--output", str(src / "cars"),
                            cwd=str(tmp_path))
    assert result.returncode == 1
    assert_one_line_error(result.stderr, f"the output {src / 'cars'} is inside the source {src}")


def test_prep_create_refuses_an_output_inside_a_source(tmp_path):
    src = make_source(tmp_path)
    assert run_subprocess("db", "init", cwd=str(tmp_path)).returncode == 0  # its own log line
    result = run_subprocess("prep", "create", "p", "--source", str(src), "--output",
                            str(src), cwd=str(tmp_path))
    assert result.returncode == 1
    assert_one_line_error(result.stderr, f"the output {src} is inside the source {src}")
    ok = run_subprocess("prep", "create", "p", "--source", str(src), "--output",
                        str(tmp_path / "cars"), cwd=str(tmp_path))
    assert ok.returncode == 0, ok.stderr


def test_a_postgres_database_is_never_inside_a_source():
    from cli.layout import sqlite_file

    assert sqlite_file("postgresql://u@h:5432/db") is None
    assert sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("sqlite:////abs/x.db") == "/abs/x.db"
