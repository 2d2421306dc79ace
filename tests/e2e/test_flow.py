"""The step-by-step flow through real `runner.py` processes, on SQLite and PostgreSQL.

`prep create` + `prep scan` + `run --exit-on-complete` + `prep daggen` + `run
--exit-on-complete` must give verified pieces, with the same piece CIDs on both backends.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import run_subprocess
from tests.conftest import drop_pg_database, make_pg_database
from tests.e2e.dataset import verify_pieces

pytestmark = pytest.mark.slow


def cli(db_url: str, cwd: Path, *args: str) -> str:
    result = run_subprocess("--database", db_url, "--log-level", "WARNING", *args,
                            cwd=str(cwd), timeout=170)
    assert result.returncode == 0, (args, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def prepare_step_by_step(db_url: str, source: Path, work: Path) -> tuple[list[dict], str]:
    out = work / "cars"
    cli(db_url, work, "prep", "create", "ds", "--source", str(source), "--output", str(out),
        "--max-size", "2MiB")
    cli(db_url, work, "prep", "scan", "ds")
    cli(db_url, work, "run", "--exit-on-complete", "--concurrency", "2")
    status = json.loads(cli(db_url, work, "prep", "status", "ds", "--json"))
    assert set(status["jobs"]) == {"scan", "pack"}
    assert set(status["jobs"]["pack"]) == {"complete"}, status["jobs"]
    cli(db_url, work, "prep", "daggen", "ds")
    cli(db_url, work, "run", "--exit-on-complete")
    status = json.loads(cli(db_url, work, "prep", "status", "ds", "--json"))
    assert status["jobs"]["daggen"] == {"complete": 1}
    pieces = json.loads(cli(db_url, work, "prep", "pieces", "ds", "--json"))
    (root,) = status["root_cids"].values()
    return pieces, root


@pytest.mark.postgres
def test_step_by_step_flow_gives_identical_piece_cids_on_sqlite_and_postgres(
        dataset, tmp_path, pg_template):
    if pg_template is None:
        pytest.skip("PostgreSQL: PIECEWORKS_TEST_PG_URL is not set")
    (tmp_path / "sqlite").mkdir()
    sqlite_pieces, sqlite_root = prepare_step_by_step(
        f"sqlite:///{tmp_path / 'sqlite' / 'pw.db'}", dataset, tmp_path / "sqlite")
    (tmp_path / "pg").mkdir()
    pg_url = make_pg_database(pg_template)
    try:
        pg_pieces, pg_root = prepare_step_by_step(pg_url, dataset, tmp_path / "pg")
    finally:
        drop_pg_database(pg_url)

    verify_pieces(sqlite_pieces, sqlite_root, dataset)
    verify_pieces(pg_pieces, pg_root, dataset)
    assert pg_root == sqlite_root

    def cids(pieces: list[dict]) -> list[tuple]:
        return sorted((p["piece_type"], p["piece_cid"], p["piece_size"], p["file_size"])
                      for p in pieces)

    assert cids(pg_pieces) == cids(sqlite_pieces)
