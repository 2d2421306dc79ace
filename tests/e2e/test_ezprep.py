"""`runner.py ez-prep` on a real tree, in a real process; every CAR read back and checked."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import run_subprocess
from tests.e2e.dataset import source_files, verify_pieces

pytestmark = pytest.mark.slow


def test_ez_prep_packs_a_real_tree_into_pieces_that_rebuild_every_file(dataset, tmp_path):
    out = tmp_path / "cars"
    result = run_subprocess("--log-level", "WARNING", "ez-prep", str(dataset),
                            "--output", str(out), "--max-size", "2MiB", "--concurrency", "2",
                            "--json", cwd=str(tmp_path), timeout=170)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    pieces = doc["pieces"]
    data = [p for p in pieces if p["piece_type"] == "data"]
    assert len(data) >= 5                                  # max_size small enough for several
    assert all(p["file_size"] <= 2 * 1024 * 1024 for p in data)
    files = source_files(dataset)
    assert doc["files"] == len(files) == sum(p["num_of_files"] for p in data)
    assert doc["bytes"] == sum(f.stat().st_size for f in files.values())
    assert (tmp_path / "pieceworks.db").exists()           # the default database
    blocks = verify_pieces(pieces, doc["root_cid"], dataset)
    assert len(blocks) > len(files)
    # progress went to stderr as plain lines (not a TTY), the results to stdout
    assert "[daggen]" in result.stderr and "pieces" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p["piece_cid"] + ".car" for p in pieces)


def test_ez_prep_without_json_prints_a_table_and_the_root_cid(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "x.txt").write_text("x" * 1000)
    result = run_subprocess("--log-level", "ERROR", "ez-prep", str(src), "--output",
                            str(tmp_path / "out"), "--name", "tiny", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("PIECE_CID")
    assert lines[-1].startswith("root CID: bafy")
    assert "preparation tiny" in result.stderr

    cars = list((tmp_path / "out").glob("*.car"))
    assert len(cars) == 2                                  # one data piece, one dag piece
    deleted = run_subprocess("prep", "delete", "tiny", "--remove-cars", cwd=str(tmp_path))
    assert deleted.returncode == 0, deleted.stderr
    assert "removed 2 CAR file(s)" in deleted.stdout
    assert not list((tmp_path / "out").glob("*.car"))


def test_the_checker_catches_a_corrupt_car_and_a_changed_source(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "x.bin").write_bytes(bytes(range(256)) * 4000)
    result = run_subprocess("--log-level", "ERROR", "ez-prep", str(src), "--output",
                            str(tmp_path / "out"), "--json", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    verify_pieces(doc["pieces"], doc["root_cid"], src)

    (src / "d" / "x.bin").write_bytes(bytes(range(256)) * 3999 + b"\1" * 256)
    with pytest.raises(AssertionError, match="differs from its source"):
        verify_pieces(doc["pieces"], doc["root_cid"], src)

    (data,) = [p for p in doc["pieces"] if p["piece_type"] == "data"]
    car = Path(data["storage_path"])
    raw = bytearray(car.read_bytes())
    raw[500] ^= 0xFF
    car.write_bytes(bytes(raw))
    with pytest.raises(AssertionError):
        verify_pieces(doc["pieces"], doc["root_cid"], src)
