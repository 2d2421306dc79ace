"""Unfinished work: `ez-prep --name NAME` resumes an interrupted run; nothing builds a DAG over
unpacked files without saying so (real subprocesses, both databases)."""
from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from storage import catalog
from storage.jobs import claim_job
from storage.workers import register_worker
from tests.cli.conftest import run_subprocess


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(6):
        (src / "d" / f"f{i}.bin").write_bytes(os.urandom(300_000 + i))
    (src / "top.txt").write_text("top")
    return src


def cli(db_url, *args, cwd):
    return run_subprocess("--database", db_url, "--log-level", "WARNING", *args, cwd=str(cwd))


def scanned_only(db_url, tree, out, cwd):
    """The state of an ez-prep stopped after its scan: pack jobs ready, nothing packed."""
    for args in (("prep", "create", "p", "--source", str(tree), "--output", str(out),
                  "--max-size", "1MiB"),
                 ("prep", "scan", "p"),
                 ("run", "--exit-on-complete", "--no-pack", "--no-dag", "--no-reaper")):
        result = cli(db_url, *args, cwd=cwd)
        assert result.returncode == 0, result.stderr


def fresh_result(tree, tmp_path):
    """What an uninterrupted ez-prep of `tree` gives, in a database of its own."""
    result = run_subprocess("--database", f"sqlite:///{tmp_path / 'fresh.db'}", "--log-level",
                            "WARNING", "ez-prep", str(tree), "--output", str(tmp_path / "fresh"),
                            "--max-size", "1MiB", "--json", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_ez_prep_with_the_name_of_an_interrupted_run_resumes_it(db, db_url, tree, tmp_path):
    out = tmp_path / "out"
    scanned_only(db_url, tree, out, tmp_path)
    result = cli(db_url, "ez-prep", str(tree), "--output", str(out), "--name", "p", "--json",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resuming preparation p" in result.stderr
    doc = json.loads(result.stdout)
    fresh = fresh_result(tree, tmp_path)
    assert doc["root_cid"] == fresh["root_cid"]
    assert sorted(p["piece_cid"] for p in doc["pieces"]) == sorted(
        p["piece_cid"] for p in fresh["pieces"])
    assert sorted(f.name for f in out.iterdir()) == sorted(
        p["piece_cid"] + ".car" for p in doc["pieces"])


def test_a_resumed_ez_prep_gives_back_the_jobs_of_a_killed_run(db, db_url, tree, tmp_path):
    out = tmp_path / "out"
    scanned_only(db_url, tree, out, tmp_path)
    dead = register_worker(db, hostname=socket.gethostname(), pid=_pid_of_exited())
    held = claim_job(db, dead, ["pack"], max_attempts=5)
    assert held is not None
    result = cli(db_url, "ez-prep", str(tree), "--output", str(out), "--name", "p", "--json",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 job(s) of a killed run given back" in result.stderr
    st = catalog.preparation_status(db, "p")
    assert set(st.jobs["pack"]) == {"complete"}
    assert json.loads(result.stdout)["root_cid"] == fresh_result(tree, tmp_path)["root_cid"]


def test_ez_prep_builds_no_dag_while_a_live_process_holds_a_pack_job(db, db_url, tree,
                                                                     tmp_path):
    out = tmp_path / "out"
    scanned_only(db_url, tree, out, tmp_path)
    alive = register_worker(db, hostname=socket.gethostname(), pid=os.getpid())
    held = claim_job(db, alive, ["pack"], max_attempts=5)
    assert held is not None
    result = cli(db_url, "ez-prep", str(tree), "--output", str(out), "--name", "p",
                 cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: 1 pack job(s) not finished") and str(held.id) in last
    assert "Traceback" not in result.stderr
    assert "daggen" not in catalog.preparation_status(db, "p").jobs


def test_ez_prep_refuses_a_name_taken_by_another_dataset(db, db_url, tree, tmp_path):
    scanned_only(db_url, tree, tmp_path / "out", tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    result = cli(db_url, "ez-prep", str(other), "--output", str(tmp_path / "out"), "--name", "p",
                 cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: preparation 'p' already exists with other sources or outputs "
        "(src -> out); choose another --name"]


def test_prep_daggen_warns_when_pack_jobs_are_not_complete(db, db_url, tree, tmp_path):
    scanned_only(db_url, tree, tmp_path / "out", tmp_path)
    pending = [j.id for j in catalog.list_jobs(db, preparation="p", type="pack")]
    result = cli(db_url, "prep", "daggen", "p", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("daggen job(s) ready: ")
    (warning,) = result.stderr.strip().splitlines()
    assert warning.startswith(f"Warning: {len(pending)} pack job(s) of p are not complete")
    assert str(pending[0]) in warning


def test_ez_prep_of_an_empty_source_says_so(db_url, tmp_path):
    empty = tmp_path / "empty"
    (empty / "only-a-dir").mkdir(parents=True)
    result = cli(db_url, "ez-prep", str(empty), "--output", str(tmp_path / "out"), "--name",
                 "e", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: preparation e: the source holds no file to prepare")


def _pid_of_exited() -> int:
    """The pid of a process that has exited and been reaped: it names no process now."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_run_gives_back_the_jobs_held_by_killed_processes_of_this_host(db, db_url, tree,
                                                                      tmp_path):
    scanned_only(db_url, tree, tmp_path / "out", tmp_path)
    dead = register_worker(db, hostname=socket.gethostname(), pid=_pid_of_exited())
    held = claim_job(db, dead, ["pack"], max_attempts=5)
    result = cli(db_url, "run", "--exit-on-complete", "--no-pack", "--no-reaper", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (warning,) = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert f"job(s) [{held.id}] of worker {dead}, a process of this host that is gone" in warning
    assert held.id in [j.id for j in catalog.list_jobs(db, state="ready", type="pack")]
