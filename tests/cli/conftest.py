"""Helpers for driving runner.py: through click's CliRunner, and as a real subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner, Result
from loguru import logger

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli_env(tmp_path, monkeypatch) -> Iterator[dict[str, str]]:
    """Run in an empty directory (no ./config.toml), with loguru reset afterwards."""
    monkeypatch.chdir(tmp_path)
    yield {}
    logger.remove()


@pytest.fixture
def invoke(cli_env):
    """`invoke(*args, env=None)`: run the CLI in-process; returns click's Result."""
    from runner import cli

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        logger.remove()  # setup_logging pointed loguru at the runner's captured stderr
        return result

    return run


def run_subprocess(*args: str, env: dict[str, str] | None = None, cwd: str | None = None,
                   timeout: float = 120) -> subprocess.CompletedProcess:
    """`python runner.py ARGS` in a real process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PIECEWORKS_")}
    full_env["PYTHONPATH"] = str(REPO)
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(REPO / "runner.py"), *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr
