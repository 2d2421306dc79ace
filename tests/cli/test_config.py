"""The config loader: precedence flag > environment > file > default, and one-line errors."""
from __future__ import annotations

import os

import pytest

from actors.config import (Config, ConfigError, load_config, parse_duration, parse_size)


def write(tmp_path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def test_no_file_no_env_no_flag_gives_the_dataclass_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config(None, {}, {}) == Config()


def test_config_example_toml_lists_every_default():
    example = os.path.join(os.path.dirname(__file__), "..", "..", "config.example.toml")
    assert load_config(example, {}, {}) == Config()


def test_config_example_toml_names_every_key():
    import dataclasses

    example = os.path.join(os.path.dirname(__file__), "..", "..", "config.example.toml")
    import tomllib
    with open(example, "rb") as fh:
        data = tomllib.load(fh)
    for section in dataclasses.fields(Config):
        keys = {f.name for f in dataclasses.fields(section.default_factory())}
        assert set(data[section.name]) == keys


def test_file_then_env_then_flag_each_override_the_one_before(tmp_path):
    path = write(tmp_path, '[worker]\nconcurrency = 2\nmin_interval = "500ms"\n'
                           '[database]\nurl = "sqlite:///file.db"\n[log]\nlevel = "WARNING"\n')
    env = {"PIECEWORKS_WORKER_CONCURRENCY": "3", "PIECEWORKS_DATABASE_URL": "sqlite:///env.db"}
    c = load_config(path, env, {"worker.concurrency": 4})
    assert c.worker.concurrency == 4                  # flag beats env and file
    assert c.database.url == "sqlite:///env.db"       # env beats file
    assert c.worker.min_interval == 0.5               # file beats default
    assert c.log.level == "WARNING"
    assert c.worker.max_interval == 160.0             # default


def test_unset_flags_do_not_override(tmp_path):
    c = load_config(write(tmp_path, "[worker]\nconcurrency = 2\n"), {},
                    {"worker.concurrency": None})
    assert c.worker.concurrency == 2


def test_config_toml_in_the_working_directory_is_read_by_default(tmp_path, monkeypatch):
    write(tmp_path, "[worker]\nmax_attempts = 7\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(None, {}, {}).worker.max_attempts == 7


def test_environment_booleans_and_durations_are_parsed():
    c = load_config(None, {"PIECEWORKS_REAPER_ENABLED": "false",
                           "PIECEWORKS_REAPER_INTERVAL": "2m",
                           "PIECEWORKS_WORKER_EXIT_ON_COMPLETE": "yes"}, {})
    assert c.reaper.enabled is False
    assert c.reaper.interval == 120.0
    assert c.worker.exit_on_complete is True


def test_unrelated_pieceworks_variables_are_ignored():
    assert load_config(None, {"PIECEWORKS_TEST_PG_URL": "x", "PIECEWORKS_HOME": "y"}, {}) \
        == load_config(None, {}, {})


@pytest.mark.parametrize("text, message", [
    ("[worker]\nconcurency = 2\n", "unknown config key worker.concurency"),
    ("[wroker]\nconcurrency = 2\n", "unknown config section [wroker]"),
    ("[worker]\nconcurrency = \"many\"\n", "bad value for worker.concurrency"),
    ("[worker]\nconcurrency = 0\n", "bad value for worker.concurrency"),
    ("[worker]\nenable_scan = \"maybe\"\n", "bad value for worker.enable_scan"),
    ("[worker]\nmin_interval = \"5 parsecs\"\n", "bad value for worker.min_interval"),
    ("[worker]\nmin_interval = \"10s\"\nmax_interval = \"5s\"\n", "worker.max_interval"),
    ("[reaper]\nstale_after = \"30s\"\n", "reaper.stale_after"),
    ("[log]\nformat = \"xml\"\n", "bad value for log.format"),
    ("[log]\nlevel = \"LOUD\"\n", "bad value for log.level"),
    ("[database]\nurl = 5\n", "bad value for database.url"),
    ("[worker\n", "is not valid TOML"),
    ("worker = 3\n", "[worker] must be a table"),
])
def test_bad_files_give_one_line_errors_naming_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, {}, {})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_environment_value_names_the_key_and_the_variable():
    with pytest.raises(ConfigError, match=r"worker\.max_attempts \(environment variable "
                                          r"PIECEWORKS_WORKER_MAX_ATTEMPTS\)"):
        load_config(None, {"PIECEWORKS_WORKER_MAX_ATTEMPTS": "three"}, {})


def test_unknown_environment_key_of_a_known_section_is_an_error():
    with pytest.raises(ConfigError, match="unknown config key worker.threads"):
        load_config(None, {"PIECEWORKS_WORKER_THREADS": "3"}, {})


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.toml"), {}, {})


@pytest.mark.parametrize("text, seconds", [
    ("500ms", 0.5), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0), ("30", 30.0), (7, 7.0),
    (0.25, 0.25), ("1.5m", 90.0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5x", "-1s", "s", True, "1 2s"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("text, size", [
    ("4096", 4096), ("1k", 1000), ("1KiB", 1024), ("1MiB", 1 << 20), ("1mib", 1 << 20),
    ("31.5GiB", 33822867456), ("2 GB", 2_000_000_000), (512, 512), ("1TiB", 1 << 40),
])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "1.5.5", "12XB", "-4", "MiB", False])
def test_bad_sizes(bad):
    with pytest.raises(ValueError):
        parse_size(bad)
