"""Pack against reference values: SPEC §11 vectors 9 and 14-19, and the shared vectors
(file CIDs, the `cars[]` CARs byte for byte, piece CIDs, the directory tree's CIDs)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from dataprep.cid import cid_from_str, cid_to_str
from dataprep.commp import piece_cid_str
from dataprep.context import JobContext
from dataprep.scan import scan_handler
from storage import scanning
from storage.jobs import load_job
from storage.models import Car, CarBlock, Directory, File, FileRange, Job, JobType
from tests.dataprep.conftest import run_job, scan_and_pack
from tests.factories import make_job
from tests.vectors import car_vector, file_vector, stream, vectors

MiB = 1 << 20


def _write(path, seed: str, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for block in stream(seed, size):
            f.write(block)


def _scan_unassigned(db, src) -> None:
    """Record the tree's files and ranges without grouping them into pack jobs."""
    scan_handler(load_job(db, make_job(db, src.attachment_id, JobType.SCAN)), JobContext(db=db))


def _pack_each_file(db, src, order=None) -> dict[str, int]:
    """One pack job per file (in path order, or `order`); returns path -> car id."""
    files = {f.path: f.id for f in File.select()}
    cars = {}
    for path in order or sorted(files):
        ids = [r.id for r in FileRange.select().where(FileRange.file == files[path])
               .order_by(FileRange.id)]
        job_id = scanning.create_pack_job(db, src.attachment_id, ids)
        assert run_job(db, job_id).completed
        cars[path] = Car.get(Car.job == job_id).id
    return cars


def test_inline_pack_of_test_txt_matches_spec_vector_9(db, make_src):
    src, _, _ = make_src({"test.txt": b"test"})
    scan_and_pack(db, src)
    car = Car.get()
    assert cid_to_str(car.piece_cid) == "baga6ea4seaqpikooah5wmbpjmnvx3ysyf36xagymjtbccnf5twt2cpaqcgcwqha"
    assert (car.piece_size, car.file_size, car.min_piece_size_padding) == (1048576, 1040384, 1040284)
    assert car.storage_id is None and car.storage_path == ""
    assert cid_to_str(car.root_cid) == "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba"
    (block,) = CarBlock.select()
    assert (block.car_offset, block.car_block_length, block.varint) == (59, 41, b"\x28")
    assert block.raw_block is None and block.file_id == File.get().id
    assert Job.get(Job.type == JobType.PACK).state == "complete"


def test_the_same_pack_with_an_output_writes_the_100_byte_car_and_its_zero_padding(db, make_src):
    src, _, outs = make_src({"test.txt": b"test"}, outputs=1)
    scan_and_pack(db, src)
    car = Car.get()
    data = Path(os.path.join(outs[0], car.storage_path)).read_bytes()
    assert car.storage_path == "baga6ea4seaqpikooah5wmbpjmnvx3ysyf36xagymjtbccnf5twt2cpaqcgcwqha.car"
    assert data[:2].hex() == "3aa2" and data[56:59].hex() == "6f6e01"
    assert len(data) == 1040384 and data[100:] == bytes(1040384 - 100)
    assert data[59:100] == b"\x28" + cid_from_str(
        "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba") + b"test"
    assert (car.file_size, car.min_piece_size_padding) == (1040384, 0)


CAR_LENGTHS = [(0, 96), (1, 97), (1024, 1121), (2048, 2145), (MiB, 1048674),
               (2 * MiB - 1, 2097434), (2 * MiB, 2097436), (2 * MiB + 1, 2097520),
               (10 * MiB - 1, 10486755), (10 * MiB, 10486756), (10 * MiB + 1, 10486840)]


@pytest.mark.parametrize("no_inline", [False, True])
def test_single_file_car_lengths_and_the_all_in_one_job_total_match_spec_vectors_14_15(
        db, make_src, no_inline):
    files = {f"{i:02d}.bin": os.urandom(size) for i, (size, _) in enumerate(CAR_LENGTHS)}
    src, _, outs = make_src(files, outputs=1, min_piece_size=1 << 7, no_inline=no_inline)
    _scan_unassigned(db, src)
    unknown = File.get(File.path == "03.bin")  # the 2048-byte file of unknown size
    File.update(size=-1).where(File.id == unknown.id).execute()
    FileRange.update(length=-1).where(FileRange.file == unknown.id).execute()
    cars = _pack_each_file(db, src)
    for i, (_, want) in enumerate(CAR_LENGTHS):
        car = Car.get_by_id(cars[f"{i:02d}.bin"])
        assert car.file_size == want
        assert os.path.getsize(os.path.join(outs[0], car.storage_path)) == want
    assert File.get_by_id(unknown.id).size == 2048
    assert FileRange.get(FileRange.file == unknown.id).length == 2048
    if no_inline:
        assert CarBlock.select().count() == 0
    FileRange.update(job=None, cid=None).execute()
    all_ids = [r.id for r in FileRange.select().join(File).order_by(File.path, FileRange.offset)]
    job_id = scanning.create_pack_job(db, src.attachment_id, all_ids)
    assert run_job(db, job_id).completed
    car = Car.get(Car.job == job_id)
    assert car.file_size == 38804284
    assert (CarBlock.select().where(CarBlock.car == car.id).count() == 0) == no_inline


def test_a_5_byte_file_gives_101_bytes_and_split_into_2_and_3_gives_138(db, make_src):
    src, _, _ = make_src({"five.bin": b"12345"}, min_piece_size=1 << 7)
    _scan_unassigned(db, src)
    (car_id,) = _pack_each_file(db, src).values()
    assert Car.get_by_id(car_id).file_size == 101
    f = File.get()
    FileRange.delete().execute()
    r1 = FileRange.create(file=f.id, offset=0, length=2)
    r2 = FileRange.create(file=f.id, offset=2, length=3)
    job_id = scanning.create_pack_job(db, src.attachment_id, [r1.id, r2.id])
    assert run_job(db, job_id).completed
    assert Car.get(Car.job == job_id).file_size == 138


@pytest.mark.parametrize("size,min_piece,outputs,piece,file_size,padding", [
    (1_500_000, MiB, 1, 2 * MiB, 1500283, 0),                 # vector 17
    (500_000, MiB, 1, MiB, 1040384, 0),                       # vector 18: physical zeros
    (600_000, 512 * 1024, 1, MiB, 600_098, 0),                # vector 19: no padding
    (400_000, MiB, 0, MiB, 1040384, 1040384 - 400_098),       # vector 19: virtual padding
])
def test_piece_size_and_padding_follow_spec_vectors_17_to_19(
        db, make_src, size, min_piece, outputs, piece, file_size, padding):
    src, _, outs = make_src({"f.bin": os.urandom(size)}, outputs=outputs,
                            min_piece_size=min_piece)
    scan_and_pack(db, src)
    car = Car.get()
    assert (car.piece_size, car.file_size, car.min_piece_size_padding) == (
        piece, file_size, padding)
    if outs:
        data = Path(os.path.join(outs[0], car.storage_path)).read_bytes()
        assert len(data) == file_size
        car_len = size + 59 + 39 if size <= MiB else file_size
        assert data[car_len:] == bytes(file_size - car_len)


@pytest.mark.parametrize("name", ["size-0", "size-1048577", "size-5242883"])
def test_pack_reproduces_the_reference_cars_byte_for_byte(db, make_src, tmp_path, name):
    vec = car_vector(name)
    size = int(name.split("-")[1])
    src, root, outs = make_src({}, outputs=1, min_piece_size=128)
    _write(root / f"{name}.bin", name, size)
    scan_and_pack(db, src)
    car = Car.get()
    data = Path(os.path.join(outs[0], car.storage_path)).read_bytes()
    assert len(data) == vec["size"]
    assert hashlib.sha256(data).hexdigest() == vec["sha256"]
    assert cid_to_str(car.piece_cid) == vec["pieceCid"]
    assert car.piece_size == vec["paddedPieceSize"]
    assert cid_to_str(car.root_cid) == vec["roots"][0]
    assert cid_to_str(File.get().cid) == vec["fileCidSingularity"]


@pytest.mark.parametrize("name", ["size-0", "size-1048577", "size-5242883"])
def test_pack_with_a_1_mib_minimum_gives_the_reference_padded_piece(db, make_src, name):
    vec = car_vector(name)
    want = next(p for p in vec["pieceCidPaddedTo"] if p["minPieceSize"] == MiB)
    size = int(name.split("-")[1])
    src, root, outs = make_src({}, outputs=1, min_piece_size=MiB)
    _write(root / f"{name}.bin", name, size)
    scan_and_pack(db, src)
    car = Car.get()
    assert cid_to_str(car.piece_cid) == want["pieceCid"]
    assert car.piece_size == want["paddedPieceSize"]
    on_disk = os.path.getsize(os.path.join(outs[0], car.storage_path))
    assert on_disk == car.file_size == (want["unpaddedSize"] if size == 0 else vec["size"])


def test_every_reference_file_gets_its_reference_cid(db, make_src):
    small = [f for f in vectors()["files"] if f["size"] <= 6 * MiB]
    src, root, _ = make_src({})
    for f in small:
        _write(root / f"{f['name']}.bin", f["seed"], f["size"])
    scan_and_pack(db, src)
    got = {row.path: cid_to_str(row.cid) for row in File.select()}
    assert got == {f"{f['name']}.bin": f["fileCidSingularity"] for f in small}
    assert piece_cid_str(Car.get().piece_cid).startswith("baga6ea4seaq")


def test_the_reference_directory_tree_gets_the_singularity_directory_cids(db, make_src):
    tree = vectors()["directories"][0]
    style = tree["dircid"]["singularityStyle"]
    src, root, _ = make_src({})
    for f in tree["files"]:
        _write(root / f["path"].removeprefix("dirtree/"), f["path"], f["size"])
    scan_and_pack(db, src)
    files = {row.path: cid_to_str(row.cid) for row in File.select()}
    assert files == style["files"]
    dirs = {}
    for d in Directory.select().where(Directory.attachment == src.attachment_id):
        path, p = [], d
        while p.parent_id is not None:
            path.append(p.name)
            p = Directory.get_by_id(p.parent_id)
        dirs["/".join(reversed(path))] = cid_to_str(d.cid)
    assert dirs.pop("") == style["rootCid"]
    assert dirs == style["dirs"]


@pytest.mark.slow
def test_the_1_gib_reference_file_of_exactly_1024_leaves_gets_its_reference_cid(tmp_path):
    """One parent node with exactly 1024 links (SQLite only: the backend plays no part)."""
    from storage.db import connect  # noqa: PLC0415
    from storage.schema import init_schema  # noqa: PLC0415
    from tests.factories import make_source  # noqa: PLC0415
    vec = file_vector("size-1073741824")
    db = connect(f"sqlite:///{tmp_path / 'big.db'}")
    init_schema(db)
    root = tmp_path / "src"
    _write(root / "big.bin", vec["seed"], vec["size"])
    src = make_source(db, source_path=str(root))
    scan_and_pack(db, src)
    assert cid_to_str(File.get().cid) == vec["fileCidSingularity"]
    assert CarBlock.select().count() == 1024 + 1
    (root / "big.bin").unlink()
    db.close()
