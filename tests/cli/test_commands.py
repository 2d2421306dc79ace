"""Every command's happy path and its one-line errors, through click's CliRunner."""
from __future__ import annotations

import json

import pytest

from tests.cli.conftest import assert_one_line_error

COMMANDS = [[], ["run"], ["db"], ["db", "init"], ["db", "upgrade"], ["storage", "add"],
            ["storage", "list"], ["prep", "create"], ["prep", "list"], ["prep", "status"],
            ["prep", "scan"], ["prep", "daggen"], ["prep", "pause"], ["prep", "resume"],
            ["prep", "pieces"], ["prep", "delete"], ["job", "list"], ["job", "retry"],
            ["job", "pause"], ["job", "resume"], ["worker", "list"], ["ez-prep"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(invoke, command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("alpha")
    (root / "b.bin").write_bytes(b"\0" * 4096)
    return root


def test_storage_add_and_list(invoke, db_url, src):
    result = invoke("--database", db_url, "storage", "add", "data", str(src))
    assert result.exit_code == 0, result.output
    assert "storage data" in result.stdout
    table = invoke("--database", db_url, "storage", "list")
    assert "data" in table.stdout and str(src) in table.stdout
    rows = json.loads(invoke("--database", db_url, "storage", "list", "--json").stdout)
    assert rows == [{"id": rows[0]["id"], "name": "data", "type": "local", "path": str(src)}]
    dup = invoke("--database", db_url, "storage", "add", "data", str(src))
    assert dup.exit_code == 1
    assert_one_line_error(dup.stderr, "storage 'data' already exists")


def test_preparation_lifecycle_through_the_cli(invoke, db_url, src, tmp_path):
    db = ("--database", db_url)
    out = tmp_path / "cars"
    r = invoke(*db, "prep", "create", "p1", "--source", str(src), "--output", str(out),
               "--max-size", "1MiB", "--min-piece-size", "256KiB")
    assert r.exit_code == 0, r.output
    assert out.is_dir()                                     # output directory created
    storages = json.loads(invoke(*db, "storage", "list", "--json").stdout)
    assert [s["path"] for s in storages] == [str(src), str(out)]
    preps = json.loads(invoke(*db, "prep", "list", "--json").stdout)
    assert preps[0]["name"] == "p1" and preps[0]["max_size"] == 1 << 20
    # a storage name works as a source too
    r = invoke(*db, "prep", "create", "p2", "--source", storages[0]["name"])
    assert r.exit_code == 0, r.output

    r = invoke(*db, "prep", "scan", "p1")
    assert r.exit_code == 0 and "scan job(s) ready" in r.stdout
    again = invoke(*db, "prep", "scan", "p1")
    assert again.exit_code == 1
    assert_one_line_error(again.stderr, "already running")

    status = json.loads(invoke(*db, "prep", "status", "p1", "--json").stdout)
    assert status["jobs"] == {"scan": {"ready": 1}}
    assert status["files"] == 0 and status["pieces"] == 0
    assert status["root_cids"] == {storages[0]["name"]: None}
    text = invoke(*db, "prep", "status", "p1").stdout
    assert "scan jobs: ready 1" in text and "(not built yet)" in text

    jobs = json.loads(invoke(*db, "job", "list", "--prep", "p1", "--json").stdout)
    assert [set(j) for j in jobs] == [{"id", "type", "state", "attempts", "error_message",
                                       "worker_id", "preparation"}]
    job_id = str(jobs[0]["id"])
    assert invoke(*db, "prep", "pause", "p1").stdout.strip() == "paused 1 job(s)"
    assert json.loads(invoke(*db, "job", "list", "--state", "paused", "--json").stdout)[0][
        "id"] == jobs[0]["id"]
    assert invoke(*db, "prep", "resume", "p1").stdout.strip() == "resumed 1 job(s)"
    assert invoke(*db, "job", "pause", job_id).stdout.strip() == f"job {job_id} paused"
    assert invoke(*db, "job", "resume", job_id).stdout.strip() == f"job {job_id} resumed"
    bad = invoke(*db, "job", "retry", job_id)
    assert bad.exit_code == 1
    assert_one_line_error(bad.stderr, f"job {job_id} cannot be restarted in state ready")
    missing = invoke(*db, "job", "pause", "999999")
    assert missing.exit_code == 1
    assert_one_line_error(missing.stderr, "job 999999 not found")
    assert json.loads(invoke(*db, "job", "list", "--type", "pack", "--json").stdout) == []

    r = invoke(*db, "prep", "daggen", "p1")
    assert r.exit_code == 0 and "daggen job(s) ready" in r.stdout
    assert json.loads(invoke(*db, "prep", "pieces", "p1", "--json").stdout) == []
    assert "PIECE_CID" in invoke(*db, "prep", "pieces", "p1").stdout

    r = invoke(*db, "prep", "delete", "p1")
    assert r.exit_code == 0, r.output
    gone = invoke(*db, "prep", "status", "p1")
    assert gone.exit_code == 1
    assert_one_line_error(gone.stderr, "preparation 'p1' not found")
    orphans = json.loads(invoke(*db, "job", "list", "--json").stdout)
    assert {j["preparation"] for j in orphans} == {None}


def test_worker_list_shows_registered_workers(invoke, db_url, db):
    from storage.workers import register_worker

    worker_id = register_worker(db, hostname="h1", pid=42)
    rows = json.loads(invoke("--database", db_url, "worker", "list", "--json").stdout)
    assert [(r["id"], r["hostname"], r["pid"], r["job_id"]) for r in rows] == [
        (worker_id, "h1", 42, None)]
    assert "HOSTNAME" in invoke("--database", db_url, "worker", "list").stdout


def test_db_init_and_upgrade_report_the_schema_version(invoke, tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    r = invoke("--database", url, "db", "init")
    assert r.exit_code == 0, r.output
    assert "schema version" in r.stdout
    r = invoke("--database", url, "db", "upgrade")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("args, code, fragments", [
    (["prep", "status", "nope"], 1, ["preparation 'nope' not found"]),
    (["prep", "scan", "nope"], 1, ["preparation 'nope' not found"]),
    (["prep", "delete", "nope"], 1, ["preparation 'nope' not found"]),
    (["prep", "create", "p", "--source", "/no/such/dir"], 1,
     ["source '/no/such/dir' is neither a storage name nor a directory"]),
    (["prep", "create", "p", "--source", "src", "--max-size", "12XB"], 2,
     ["--max-size", "not a size: '12XB'"]),
    (["prep", "create", "p", "--source", "src", "--max-size", "1MiB", "--min-piece-size", "3"], 1,
     ["min piece size must be a power of two"]),
    (["prep", "create", "p"], 2, ["--source"]),
    (["ez-prep", "/no/such/dir", "--output", "out"], 1, ["source '/no/such/dir' is not a directory"]),
    (["ez-prep", ".", "--output", "out", "--max-size", "lots"], 2, ["not a size"]),
    (["job", "list", "--state", "sleeping"], 2, ["--state"]),
    (["job", "retry", "abc"], 2, ["'abc' is not a valid integer"]),
    (["frobnicate"], 2, ["No such command 'frobnicate'"]),
    (["storage", "add", "x", "/no/such/dir"], 1, ["is not a directory"]),
])
def test_user_errors_are_one_line_with_the_right_exit_code(invoke, tmp_path, args, code,
                                                           fragments):
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    (tmp_path / "src").mkdir()                    # a source must not hold the database file
    assert invoke("--database", url, "db", "init").exit_code == 0  # its log line is not the error's
    result = invoke("--database", url, *args)
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert_one_line_error(result.stderr, *fragments)


def test_unreachable_database_is_one_line_naming_the_url(invoke):
    result = invoke("--database", "postgresql://nobody:secret@127.0.0.1:1/nothing",
                    "prep", "list")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "cannot open database",
                          "postgresql://nobody:***@127.0.0.1:1/nothing")
    assert "secret" not in result.stderr


def test_bad_database_url_is_one_line(invoke):
    result = invoke("--database", "mysql://x/y", "prep", "list")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "unknown scheme 'mysql'")


def test_bad_config_key_is_one_line_naming_the_key(invoke, tmp_path):
    (tmp_path / "config.toml").write_text("[worker]\nconcurency = 3\n")
    result = invoke("prep", "list")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "unknown config key worker.concurency")
    (tmp_path / "config.toml").unlink()
    result = invoke("prep", "list", env={"PIECEWORKS_WORKER_CONCURRENCY": "0"})
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "bad value for worker.concurrency",
                          "PIECEWORKS_WORKER_CONCURRENCY")


def test_missing_config_file_is_one_line(invoke):
    result = invoke("--config", "nope.toml", "prep", "list")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "config file nope.toml not found")


def test_database_flag_beats_environment_beats_config_file(invoke, tmp_path):
    (tmp_path / "config.toml").write_text('[database]\nurl = "sqlite:///from_file.db"\n')
    assert invoke("storage", "list").exit_code == 0
    assert (tmp_path / "from_file.db").exists()
    env = {"PIECEWORKS_DATABASE_URL": "sqlite:///from_env.db"}
    assert invoke("storage", "list", env=env).exit_code == 0
    assert (tmp_path / "from_env.db").exists()
    assert invoke("--database", "sqlite:///from_flag.db", "storage", "list",
                  env=env).exit_code == 0
    assert (tmp_path / "from_flag.db").exists()


def test_help_works_even_with_a_broken_config(invoke, tmp_path):
    (tmp_path / "config.toml").write_text("not toml [")
    assert invoke("prep", "list", "--help").exit_code == 0


def test_a_newer_schema_is_refused_in_one_line(invoke, db_url, db):
    from storage.models import SchemaMigration

    SchemaMigration.insert(version=999).execute()
    result = invoke("--database", db_url, "prep", "list")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "schema version 999", "upgrade pieceworks")


def test_a_bug_is_one_line_and_its_traceback_shows_only_at_debug(invoke, tmp_path,
                                                                 monkeypatch):
    from storage import catalog

    def broken(db):
        raise RuntimeError("boom")

    # A bug cannot be provoked through the real code, so this one is planted.
    monkeypatch.setattr(catalog, "list_storages", broken)
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    assert invoke("--database", url, "db", "init").exit_code == 0
    result = invoke("--database", url, "storage", "list")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "internal error: RuntimeError: boom",
                          "--log-level DEBUG")
    debug = invoke("--database", url, "--log-level", "DEBUG", "storage", "list")
    assert debug.exit_code == 1
    assert "Traceback" in debug.stderr and "RuntimeError: boom" in debug.stderr


def test_version_prints_the_installed_version(invoke):
    from importlib.metadata import version

    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"pieceworks {version('pieceworks')}"
