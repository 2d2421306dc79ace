"""DAG generation (SPEC §8.4): vectors 28-29, the whole tree read back from the CARs,
odd names round-tripped, empty directories exported once."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from dataprep.car import parse_car_header, read_car, read_car_roots
from dataprep.cid import CODEC_RAW, cid_codec, cid_to_str, dag_pb_cid, decode_uvarint, raw_cid
from dataprep.dagwalk import list_directory, read_file
from dataprep.dirstate import DirectoryState
from dataprep.errors import DagNotReady, DataprepError
from dataprep.source import unescape_path
from dataprep.unixfs import TYPE_DIRECTORY, TYPE_HAMT_SHARD, decode_node, decode_unixfs
from storage.models import Car, CarBlock, Directory, File, Job, JobType, Preparation
from tests.dataprep.conftest import run_job, scan_and_pack, write_tree
from tests.factories import make_directory, make_job
from tests.vectors import stream, vectors

EMPTY_DIR = bytes.fromhex("0a020801")


def blocks_of(outs: list[str]) -> dict[bytes, bytes]:
    """Every block of every CAR in the output directories, checked against its CID."""
    found: dict[bytes, bytes] = {}
    for out in outs:
        for name in os.listdir(out):
            for block in read_car(car_bytes(os.path.join(out, name))):
                if cid_codec(block.cid) == CODEC_RAW:
                    assert raw_cid(block.data) == block.cid
                else:
                    assert dag_pb_cid(block.data) == block.cid
                found[block.cid] = block.data
    return found


def car_bytes(path: str) -> bytes:
    """A CAR file's bytes without the zero padding appended to reach a minimum piece."""
    data = Path(path).read_bytes()
    _, pos = parse_car_header(data)
    while pos < len(data):
        length, after = decode_uvarint(data, pos)
        if length == 0:
            assert data[pos:] == bytes(len(data) - pos)
            break
        pos = after + length
    return data[:pos]


def walk_tree(blocks: dict[bytes, bytes], cid: bytes, prefix: bytes = b"") -> dict[bytes, bytes]:
    """Raw path -> content for every file under the directory `cid`."""
    files: dict[bytes, bytes] = {}
    for name, (child, _) in list_directory(blocks.__getitem__, cid).items():
        path = prefix + name.encode("utf-8", "surrogateescape")
        if cid_codec(child) != CODEC_RAW:
            kind = decode_unixfs(decode_node(blocks[child])[1]).type
            if kind in (TYPE_DIRECTORY, TYPE_HAMT_SHARD):
                files.update(walk_tree(blocks, child, path + b"/"))
                continue
        files[path] = read_file(blocks.__getitem__, child)
    return files


def test_daggen_of_spec_vector_28_writes_three_blocks_and_marks_both_exported(db, make_src):
    src, _, _ = make_src({})
    hello = raw_cid(b"hello")
    placeholder = dag_pb_cid(b"placeholder")
    empty = dag_pb_cid(EMPTY_DIR)
    dir1 = DirectoryState(additional={hello: b"hello", placeholder: b""}).to_bytes()
    Directory.update(cid=empty, data=dir1).where(Directory.id == src.root_directory_id).execute()
    dir2 = make_directory(db, src.attachment_id, src.root_directory_id, "dir2")
    Directory.update(cid=empty, data=DirectoryState().to_bytes()).where(
        Directory.id == dir2).execute()
    assert run_job(db, make_job(db, src.attachment_id, JobType.DAGGEN)).completed
    car = Car.get()
    assert (car.piece_type, car.job_id, car.num_of_files, car.root_cid) == ("dag", None, 0, empty)
    got = [(b.cid, b.raw_block) for b in CarBlock.select().order_by(CarBlock.car_offset)]
    assert got == [(empty, EMPTY_DIR), (hello, b"hello"), (empty, EMPTY_DIR)]
    assert CarBlock.get(CarBlock.cid == hello).car_offset == 59 + 1 + 36 + 4
    assert Directory.select().where(Directory.exported == False).count() == 0  # noqa: E712


def test_daggen_with_no_inline_records_no_car_blocks(db, make_src):
    src, _, outs = make_src({"a.txt": b"a"}, outputs=1, no_inline=True)
    scan_and_pack(db, src, daggen=True)
    assert Car.select().where(Car.piece_type == "dag").count() == 1
    assert CarBlock.select().count() == 0


def test_daggen_with_a_512_kib_minimum_pads_the_file_physically(db, make_src):
    src, _, outs = make_src({"a.txt": b"a"}, outputs=1, min_piece_size=512 * 1024)
    scan_and_pack(db, src, daggen=True)
    car = Car.get(Car.piece_type == "dag")
    assert car.piece_size >= 512 * 1024
    assert car.file_size == car.piece_size * 127 // 128 and car.min_piece_size_padding == 0
    assert os.path.getsize(os.path.join(outs[0], car.storage_path)) == car.file_size


def test_the_reference_tree_reads_back_from_its_cars_with_the_reference_root(db, make_src):
    tree = vectors()["directories"][0]
    src, root, outs = make_src({}, outputs=1)
    expected = {}
    for f in tree["files"]:
        rel = f["path"].removeprefix("dirtree/")
        data = b"".join(stream(f["path"], f["size"]))
        write_tree(root, {rel: data})
        expected[rel.encode()] = data
    scan_and_pack(db, src, daggen=True)
    dag_car = Car.get(Car.piece_type == "dag")
    want_root = tree["dircid"]["singularityStyle"]["rootCid"]
    assert cid_to_str(dag_car.root_cid) == want_root
    assert [cid_to_str(r) for r in read_car_roots(os.path.join(outs[0], dag_car.storage_path))] \
        == [want_root]
    assert walk_tree(blocks_of(outs), dag_car.root_cid) == expected


def test_odd_names_round_trip_exactly_through_the_database_and_the_dag(db, make_src):
    names = {b"caf\xe9.txt": b"latin-1 name", b"line\nbreak.txt": b"newline",
             b"back\\slash.txt": b"backslash", b"d\xff/\xc3\xa9t\xc3\xa9.bin": b"utf-8 in odd dir",
             b"\\x41.txt": b"looks escaped", "ok-ñ.txt".encode(): b"plain utf-8"}
    src, root, outs = make_src(names, outputs=1)
    scan_and_pack(db, src, daggen=True)
    assert sorted(unescape_path(f.path) for f in File.select()) == sorted(names)
    for f in File.select():
        f.path.encode("utf-8")  # valid text on both backends
    dag_car = Car.get(Car.piece_type == "dag")
    assert walk_tree(blocks_of(outs), dag_car.root_cid) == names


def test_empty_directories_stay_out_of_the_dag_and_are_exported_once(db, make_src, log_lines):
    src, root, _ = make_src({"a.txt": b"a"}, dirs=("empty", "outer/inner"))
    scan_and_pack(db, src, daggen=True)
    assert Directory.select().where(Directory.exported == False).count() == 0  # noqa: E712
    names = [e.name for e in DirectoryState.from_bytes(
        Directory.get_by_id(src.root_directory_id).data).directory]
    assert names == ["a.txt"]  # as Singularity: a directory without files has no node
    log_lines.clear()
    dag_job = Job.get(Job.type == JobType.DAGGEN).id
    Job.update(state="ready", worker=None).where(Job.id == dag_job).execute()
    assert run_job(db, dag_job).completed
    assert Car.select().where(Car.piece_type == "dag").count() == 1
    assert not any("changed since we started" in m for m in log_lines)
    assert any("nothing to export" in m for m in log_lines)
    # A file appears in the empty directory: it gets a node and is exported next time.
    (root / "empty" / "now.txt").write_bytes(b"now")
    assert run_job(db, make_job(db, src.attachment_id, JobType.SCAN)).completed
    for job in Job.select().where((Job.type == JobType.PACK) & (Job.state == "ready")):
        assert run_job(db, job.id).completed
    Job.update(state="ready", worker=None).where(Job.id == dag_job).execute()
    assert run_job(db, dag_job).completed
    assert Car.select().where(Car.piece_type == "dag").count() == 2
    names = [e.name for e in DirectoryState.from_bytes(
        Directory.get_by_id(src.root_directory_id).data).directory]
    assert names == ["a.txt", "empty"]


def test_daggen_before_any_pack_fails_not_ready_and_is_refused_with_no_dag(db, make_src):
    src, _, _ = make_src({"a.txt": b"a"})
    with pytest.raises(DagNotReady, match="dag is not ready"):
        run_job(db, make_job(db, src.attachment_id, JobType.DAGGEN))
    Preparation.update(no_dag=True).execute()
    with pytest.raises(DataprepError, match="dag generation is disabled"):
        run_job(db, make_job(db, src.attachment_id, JobType.DAGGEN))


def test_the_dag_of_a_big_directory_is_a_hamt_that_reads_back(db, make_src):
    names = {f"{'n' * 200}-{i:04d}.txt".encode(): str(i).encode() for i in range(1100)}
    src, root, outs = make_src(names, outputs=1)
    scan_and_pack(db, src, daggen=True)
    root_node = Directory.get_by_id(src.root_directory_id)
    blocks = blocks_of(outs)
    assert decode_unixfs(decode_node(blocks[root_node.cid])[1]).type == TYPE_HAMT_SHARD
    assert walk_tree(blocks, root_node.cid) == names
