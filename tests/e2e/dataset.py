"""The e2e data set (a copy of part of the standard library, plus big files) and its checks.

`verify_pieces` reads every CAR back: its size and piece CID (commP), every block against
its CID, then rebuilds every source file from the DAG under the root CID and compares bytes.
"""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import sysconfig
from pathlib import Path

from dataprep.car import read_car, read_car_roots
from dataprep.cid import cid_digest, cid_from_str, cid_to_str, decode_uvarint
from dataprep.commp import compute_piece
from dataprep.dagwalk import list_directory, read_file

STDLIB_PACKAGES = ("json", "email", "logging", "xml", "urllib", "http", "importlib",
                   "concurrent", "wsgiref", "sqlite3", "tomllib", "zoneinfo", "html",
                   "xmlrpc", "dbm", "collections", "re", "asyncio", "unittest",
                   "multiprocessing", "ctypes", "idlelib")
BIG_FILES = {"big/one_and_a_half.bin": 1_572_864 + 17, "big/three.bin": 3 * 1024 * 1024 + 5,
             "big/nested/deeper/two.bin": 2 * 1024 * 1024}


def make_dataset(dst: Path) -> Path:
    """A tree of a few hundred stdlib files, nested directories, some files > 1 MiB."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in STDLIB_PACKAGES:
        shutil.copytree(stdlib / name, dst / "stdlib" / name, symlinks=False,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "test*"))
    for name in ("os.py", "typing.py", "argparse.py", "pydoc.py"):
        shutil.copy2(stdlib / name, dst / "stdlib" / name)
    rng = random.Random(5)
    for rel, size in BIG_FILES.items():
        path = dst / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
    (dst / "empty.txt").write_bytes(b"")
    (dst / "empty_dir").mkdir()
    return dst


def source_files(root: Path) -> dict[str, Path]:
    """Relative path → path of every regular file under `root`."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            out[full.relative_to(root).as_posix()] = full
    return out


def car_bytes_without_padding(data: bytes) -> bytes:
    """The CAR stream of a file that may end in zero padding (SPEC §7.5)."""
    pos = decode_uvarint(data, 0)[1] + decode_uvarint(data, 0)[0]
    while pos < len(data):
        length, start = decode_uvarint(data, pos)
        if length == 0:
            assert not data[pos:].strip(b"\0"), "non-zero bytes after the CAR's end"
            return data[:pos]
        pos = start + length
    return data


def verify_pieces(pieces: list[dict], root_cid: str, source: Path) -> dict[bytes, bytes]:
    """Check every piece and rebuild the whole source tree from the DAG; returns the blocks."""
    blocks: dict[bytes, bytes] = {}
    kinds = {p["piece_type"] for p in pieces}
    assert kinds == {"data", "dag"}, kinds
    for piece in pieces:
        path = piece["storage_path"]
        assert path and os.path.basename(path) == piece["piece_cid"] + ".car"
        data = Path(path).read_bytes()
        assert len(data) == piece["file_size"]
        cid, size = compute_piece(data, 1 << 20)
        assert (cid_to_str(cid), size) == (piece["piece_cid"], piece["piece_size"])
        car = car_bytes_without_padding(data)
        assert read_car_roots(car) == [cid_from_str(piece["root_cid"])]
        for block in read_car(car):
            assert cid_digest(block.cid) == hashlib.sha256(block.data).digest(), \
                f"block {cid_to_str(block.cid)} of {path} does not match its CID"
            blocks[block.cid] = block.data
    dag = [p for p in pieces if p["piece_type"] == "dag"]
    assert dag[-1]["root_cid"] == root_cid

    expected = source_files(source)
    found: dict[str, bytes] = {}

    def walk(cid: bytes, prefix: str) -> None:
        for name, (child, _size) in list_directory(blocks.__getitem__, cid).items():
            rel = f"{prefix}{name}"
            if rel in expected or expected.get(rel) is not None:
                found[rel] = read_file(blocks.__getitem__, child)
            else:
                walk(child, rel + "/")

    walk(cid_from_str(root_cid), "")
    assert sorted(found) == sorted(expected), "the DAG root does not list the whole tree"
    for rel, path in expected.items():
        assert found[rel] == path.read_bytes(), f"{rel} differs from its source"
    return blocks
