"""Property tests on random small trees, and determinism across runs, orders and threads.

Every CAR produced is read back: each block hashes to its CID, each file's DAG gives the
source bytes, the root directory gives the whole tree, and commP recomputed over the CAR
file equals the recorded piece CID.
"""
from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataprep.commp import compute_piece
from dataprep.dagwalk import read_file
from storage.db import connect
from storage.models import Car, File, Job, JobType
from storage.schema import init_schema
from tests.dataprep.conftest import run_job, scan_and_pack, write_tree
from tests.dataprep.test_daggen import blocks_of, walk_tree
from tests.factories import make_job, make_source

MiB = 1 << 20
SIZES = st.one_of(st.sampled_from([0, 1, 127, MiB - 1, MiB, MiB + 1, 2 * MiB + 5]),
                  st.integers(0, 70_000))
NAMES = st.text("abcé_-. ", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))
TREES = st.dictionaries(st.lists(NAMES, min_size=1, max_size=3).map(tuple), SIZES,
                        min_size=1, max_size=8)


def _materialize(shape: dict[tuple[str, ...], int], seed: int) -> dict[bytes, bytes]:
    """Paths -> contents, dropping a path that is, or lies under, another file."""
    rng = random.Random(seed)
    files: dict[tuple[str, ...], bytes] = {}
    dirs: set[tuple[str, ...]] = set()
    for parts, size in sorted(shape.items()):
        prefixes = {parts[:i] for i in range(1, len(parts))}
        if parts in dirs or prefixes & files.keys():
            continue
        dirs |= prefixes
        files[parts] = rng.randbytes(size)
    return {"/".join(parts).encode(): data for parts, data in files.items()}


def _check_outputs(outs: list[str], files: dict[bytes, bytes], min_piece: int) -> None:
    blocks = blocks_of(outs)  # each block hashes to its CID
    for f in File.select():
        assert read_file(blocks.__getitem__, f.cid) == files[f.path.encode()]
    dag_car = Car.get(Car.piece_type == "dag")
    assert walk_tree(blocks, dag_car.root_cid) == files
    for car in Car.select():
        with open(os.path.join(outs[0], car.storage_path), "rb") as fobj:
            piece_cid, piece_size = compute_piece(fobj, min_piece)
        assert (piece_cid, piece_size) == (car.piece_cid, car.piece_size)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(shape=TREES, seed=st.integers(0, 2**32), max_size=st.sampled_from(
    [300_000, 2_000_000, 64 * MiB]), min_piece=st.sampled_from([128, MiB, 4 * MiB]))
def test_random_trees_read_back_exactly_from_their_cars(shape, seed, max_size, min_piece):
    files = _materialize(shape, seed)
    work = Path(tempfile.mkdtemp(prefix="pw-prop-"))
    try:
        db = connect(f"sqlite:///{work / 'p.db'}")
        init_schema(db)
        root = write_tree(work / "src", files)
        out = work / "out"
        out.mkdir()
        src = make_source(db, source_path=str(root), outputs=(str(out),), max_size=max_size,
                          min_piece_size=min_piece)
        scan_and_pack(db, src, daggen=True)
        _check_outputs([str(out)], files, min_piece)
        db.close()
    finally:
        shutil.rmtree(work)


def _tree() -> dict[bytes, bytes]:
    rng = random.Random(7)
    return {b"a/one.bin": rng.randbytes(3 * MiB + 11), b"a/b/two.bin": rng.randbytes(5000),
            b"three.bin": rng.randbytes(MiB), b"c/empty.bin": b"", b"c/four.bin": b"4" * 77}


def _car_files(outs: list[str]) -> dict[str, bytes]:
    return {name: Path(out, name).read_bytes() for out in outs for name in os.listdir(out)}


def _pack_all(db, src, order: str) -> None:
    scan = make_job(db, src.attachment_id, JobType.SCAN)
    assert run_job(db, scan).completed
    ids = [j.id for j in Job.select().where((Job.type == JobType.PACK)
                                            & (Job.attachment == src.attachment_id))
           .order_by(Job.id)]
    if order == "reverse":
        ids.reverse()
    if order == "threads":
        errors: list[BaseException] = []

        def work(chunk: list[int]) -> None:
            try:
                for job_id in chunk:
                    assert run_job(db, job_id).completed
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                db.close()

        threads = [threading.Thread(target=work, args=(ids[i::2],)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors and not any(t.is_alive() for t in threads)
    else:
        for job_id in ids:
            assert run_job(db, job_id).completed
    assert run_job(db, make_job(db, src.attachment_id, JobType.DAGGEN)).completed


def test_the_same_tree_gives_byte_identical_cars_in_any_job_order_and_concurrency(
        db, make_src):
    results = []
    for order in ("forward", "forward", "reverse", "threads"):
        src, _, outs = make_src(_tree(), outputs=1, max_size=2_000_000)
        _pack_all(db, src, order)
        root = Car.get((Car.piece_type == "dag") & (Car.attachment == src.attachment_id))
        results.append((_car_files(outs), root.root_cid))
    assert len(results[0][0]) > 3
    assert all(r == results[0] for r in results[1:])
