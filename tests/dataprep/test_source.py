"""The local source: listing order, odd names, links, special files, output files."""
from __future__ import annotations

import os
import socket
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataprep.errors import OutputError, SourceError
from dataprep.output import CarOutput, sweep_temp_files
from dataprep.source import (LocalSource, escape_name, escape_path, unescape_name,
                             unescape_path)
from tests.dataprep.conftest import without_permission_override, write_tree


@given(st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b))
def test_every_raw_name_round_trips_through_its_escaped_text(raw):
    text = escape_name(raw)
    assert unescape_name(text) == raw
    text.encode("utf-8")  # storable as text: no surrogates


def test_plain_names_are_stored_unchanged_and_odd_ones_escaped():
    assert escape_name("été.txt".encode()) == "été.txt"
    assert escape_name(b"a\nb") == "a\nb"
    assert escape_name(b"back\\slash") == "back\\\\slash"
    assert escape_name(b"bad\xff\xfe") == "bad\\xff\\xfe"
    assert unescape_path(escape_path(b"d\xff/x\\y")) == b"d\xff/x\\y"


def test_walk_is_breadth_first_with_each_listing_sorted_by_name_bytes(tmp_path):
    write_tree(tmp_path, {"b.txt": b"1", "a/z.txt": b"22", "a/c/d.txt": b"", "B": b"x"},
               dirs=("e",))
    got = [(e.path, e.is_dir, e.size) for e in LocalSource(str(tmp_path)).walk()]
    assert got == [("B", False, 1), ("a", True, 0), ("b.txt", False, 1), ("e", True, 0),
                   ("a/c", True, 0), ("a/z.txt", False, 2), ("a/c/d.txt", False, 0)]


def test_symlinks_are_not_followed_and_a_link_loop_does_not_hang(tmp_path, log_lines):
    write_tree(tmp_path, {"d/f.txt": b"hi"})
    os.symlink("..", tmp_path / "d" / "loop")
    os.symlink("f.txt", tmp_path / "d" / "link.txt")
    got = [e.path for e in LocalSource(str(tmp_path)).walk()]
    assert got == ["d", "d/f.txt"]
    assert any("symbolic link d/loop" in m for m in log_lines)


def test_fifos_and_sockets_are_skipped_with_a_warning_and_never_opened(tmp_path, log_lines):
    write_tree(tmp_path, {"f.txt": b"x"})
    os.mkfifo(tmp_path / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        got = [e.path for e in LocalSource(str(tmp_path)).walk()]
    finally:
        sock.close()
    assert got == ["f.txt"]
    assert any("pipe: not a regular file" in m for m in log_lines)
    assert any("sock: not a regular file" in m for m in log_lines)


def test_a_missing_root_is_a_clear_source_error(tmp_path):
    with pytest.raises(SourceError, match="not accessible"):
        list(LocalSource(str(tmp_path / "nope")).walk())


def test_an_unreadable_directory_fails_the_listing_unless_skipping(tmp_path, log_lines):
    write_tree(tmp_path, {"ok.txt": b"1", "locked/secret.txt": b"2"})
    os.chmod(tmp_path / "locked", 0)
    try:
        with pytest.raises(SourceError, match="cannot list directory locked"):
            without_permission_override(lambda: list(LocalSource(str(tmp_path)).walk()))
        got = without_permission_override(lambda: [
            e.path for e in LocalSource(str(tmp_path), skip_inaccessible=True).walk()])
        assert got == ["locked", "ok.txt"]
        assert any("skipping unreadable directory locked" in m for m in log_lines)
    finally:
        os.chmod(tmp_path / "locked", 0o755)


def test_a_car_output_keeps_its_temp_name_until_commit_and_abort_removes_only_it(tmp_path):
    out = CarOutput(str(tmp_path), job_id=7)
    assert os.path.basename(out.temp_path).startswith(".pieceworks-7-")
    out.write(b"abc")
    assert out.finish("bagafoo") == "bagafoo.car"
    assert os.listdir(tmp_path) == [os.path.basename(out.temp_path)]
    out.commit()
    out.commit()  # a retried completion runs apply again
    assert os.listdir(tmp_path) == ["bagafoo.car"]
    assert (tmp_path / "bagafoo.car").read_bytes() == b"abc"
    out.abort()  # after the commit: nothing to undo
    other = CarOutput(str(tmp_path), job_id=8)
    other.write(b"abc")
    other.finish("bagafoo")
    other.abort()  # a lost compare-and-set: the shared final name is never touched
    assert os.listdir(tmp_path) == ["bagafoo.car"]


def test_a_commit_onto_an_identical_piece_drops_its_temp_file_and_keeps_theirs(tmp_path):
    theirs = tmp_path / "bagafoo.car"
    theirs.write_bytes(b"abc")
    inode = theirs.stat().st_ino
    out = CarOutput(str(tmp_path), job_id=9)
    out.write(b"abc")
    out.finish("bagafoo")
    out.commit()
    assert os.listdir(tmp_path) == ["bagafoo.car"]
    assert theirs.stat().st_ino == inode


def test_a_commit_replaces_a_final_file_of_the_wrong_size(tmp_path, log_lines):
    (tmp_path / "bagafoo.car").write_bytes(b"ab")  # e.g. a partial copy made by hand
    out = CarOutput(str(tmp_path), job_id=9)
    out.write(b"abc")
    out.finish("bagafoo")
    out.commit()
    assert os.listdir(tmp_path) == ["bagafoo.car"]
    assert (tmp_path / "bagafoo.car").read_bytes() == b"abc"
    assert any("replacing" in m and "bagafoo.car" in m for m in log_lines)


def test_a_missing_output_directory_is_a_clear_output_error(tmp_path):
    with pytest.raises(OutputError, match="cannot create a CAR in output directory"):
        CarOutput(str(tmp_path / "missing"), job_id=1)


def test_sweep_removes_only_old_pieceworks_temp_files(tmp_path):
    old = tmp_path / ".pieceworks-1-abc.car.tmp"
    new = tmp_path / ".pieceworks-2-def.car.tmp"
    keep = tmp_path / "bagaxyz.car"
    for p in (old, new, keep):
        p.write_bytes(b"x")
    now = time.time()
    os.utime(old, (now - 7200, now - 7200))
    os.utime(keep, (now - 7200, now - 7200))
    assert sweep_temp_files([str(tmp_path), str(tmp_path / "gone")], 3600, now=now) == 1
    assert sorted(os.listdir(tmp_path)) == sorted([new.name, keep.name])
