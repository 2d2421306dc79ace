"""The seed scenario (Singularity #680): deleting a preparation while its pack jobs are ready.

Through real processes: create, scan (pack jobs become ready), `prep delete`, then
`run --exit-on-complete --exit-on-error`. It must exit 0 without a traceback (the orphaned
jobs are never claimed), and the reaper's first cycle removes every orphan row.
"""
from __future__ import annotations

import json

import pytest

from storage.db import connect
from storage.models import Car, Directory, File, FileRange, Job
from tests.cli.conftest import run_subprocess


def cli(db_url: str, cwd, *args: str):
    result = run_subprocess("--database", db_url, *args, cwd=str(cwd), timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_deleting_a_preparation_with_ready_pack_jobs_leaves_nothing_to_crash_on(
        db_url, tmp_path):
    src = tmp_path / "src"
    for d in range(4):
        (src / f"d{d}").mkdir(parents=True)
        for f in range(5):
            (src / f"d{d}" / f"f{f}.bin").write_bytes(bytes([d, f]) * 40_000)
    assert cli(db_url, tmp_path, "prep", "create", "seed", "--source", str(src),
               "--output", str(tmp_path / "cars"), "--max-size", "256KiB").returncode == 0
    assert cli(db_url, tmp_path, "prep", "scan", "seed").returncode == 0
    scan_only = cli(db_url, tmp_path, "run", "--exit-on-complete", "--no-pack", "--no-dag",
                    "--no-reaper")
    assert scan_only.returncode == 0, scan_only.stderr
    jobs = json.loads(cli(db_url, tmp_path, "job", "list", "--prep", "seed", "--type", "pack",
                          "--json").stdout)
    assert len(jobs) >= 3 and {j["state"] for j in jobs} == {"ready"}

    deleted = cli(db_url, tmp_path, "prep", "delete", "seed")
    assert deleted.returncode == 0, deleted.stderr
    orphans = json.loads(cli(db_url, tmp_path, "job", "list", "--json").stdout)
    assert {j["preparation"] for j in orphans} == {None}

    run = cli(db_url, tmp_path, "run", "--exit-on-complete", "--exit-on-error")
    assert run.returncode == 0, run.stderr
    assert "Error" not in run.stderr.replace("exit-on-error", "")

    db = connect(db_url)
    try:
        assert Job.select().count() == 0, run.stderr
        assert File.select().count() == 0
        assert FileRange.select().count() == 0
        assert Directory.select().count() == 0
        assert Car.select().count() == 0
    finally:
        db.close()
    assert not list((tmp_path / "cars").glob("*.car"))
