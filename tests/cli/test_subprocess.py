"""runner.py as a real process: exit codes, one-line errors, no traceback unless DEBUG."""
from __future__ import annotations

import json

from tests.cli.conftest import assert_one_line_error, run_subprocess


def test_unknown_preparation_exits_1_with_one_line_and_no_traceback(tmp_path):
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    assert run_subprocess("--database", url, "db", "init", cwd=str(tmp_path)).returncode == 0
    result = run_subprocess("--database", url, "prep", "status", "nope", cwd=str(tmp_path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert_one_line_error(result.stderr, "preparation 'nope' not found")


def test_bad_size_exits_2_with_one_line(tmp_path):
    result = run_subprocess("ez-prep", str(tmp_path), "--output", "o", "--max-size", "big",
                            cwd=str(tmp_path))
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "not a size: 'big'")


def test_unreachable_database_exits_1_for_run(tmp_path):
    result = run_subprocess("--database", "postgresql://postgres@127.0.0.1:1/none", "run",
                            "--exit-on-complete", cwd=str(tmp_path))
    assert result.returncode == 1
    lines = [x for x in result.stderr.splitlines() if x.startswith("Error: ")]
    assert lines and "cannot open database postgresql://postgres@127.0.0.1:1/none" in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_config_key_in_the_environment_exits_1(tmp_path):
    result = run_subprocess("prep", "list", env={"PIECEWORKS_REAPER_INTERVALL": "5s"},
                            cwd=str(tmp_path))
    assert result.returncode == 1
    assert_one_line_error(result.stderr, "unknown config key reaper.intervall",
                          "PIECEWORKS_REAPER_INTERVALL")


def test_debug_log_level_adds_the_traceback(tmp_path):
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    result = run_subprocess("--database", url, "--log-level", "DEBUG", "prep", "status",
                            "nope", cwd=str(tmp_path))
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == "Error: preparation 'nope' not found"


def test_no_subcommand_runs_the_pool_like_run(tmp_path):
    result = run_subprocess(env={"PIECEWORKS_WORKER_EXIT_ON_COMPLETE": "true",
                                 "PIECEWORKS_DATABASE_URL": f"sqlite:///{tmp_path / 'pw.db'}"},
                            cwd=str(tmp_path), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "worker pool starting" in result.stderr
    assert "worker pool stopped (exit code 0)" in result.stderr


def test_json_log_format_writes_one_json_object_per_line(tmp_path):
    result = run_subprocess("--log-format", "json", "--database",
                            f"sqlite:///{tmp_path / 'pw.db'}", "run", "--exit-on-complete",
                            "--no-reaper", cwd=str(tmp_path), timeout=60)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert any("worker pool starting" in r["record"]["message"] for r in records)


def test_log_file_receives_the_log(tmp_path):
    log = tmp_path / "pw.log"
    result = run_subprocess("--database", f"sqlite:///{tmp_path / 'pw.db'}", "run",
                            "--exit-on-complete", env={"PIECEWORKS_LOG_FILE": str(log)},
                            cwd=str(tmp_path), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "worker pool starting" in log.read_text()
    assert "worker pool starting" not in result.stderr
