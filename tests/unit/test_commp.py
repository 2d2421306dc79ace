"""commP (SPEC §7.5): both kernels against the reference vectors, SPEC §11 vectors 9–13 and 35,
and against each other over random inputs and random chunkings; GIL release of the native one.

Expected piece CIDs always come from ../shared/vectors (independent implementations) or
SPEC.md, never from our code. The native kernel is built in place if it is not built yet,
so these tests never silently run the fallback alone.
"""
from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep import commp
from dataprep.cid import EMPTY_FILE_CID, raw_cid
from tests.vectors import car_vector, content, single_file_car, stream, vectors

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20
KERNELS = ["python", "portable", "native"]
Factory = Callable[[], commp.CommPLike]


def _native_module():  # type: ignore[no-untyped-def]
    """dataprep._commp, built in place first if needed (a build failure fails the test)."""
    try:
        from dataprep import _commp
    except ImportError:
        build = subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--inplace"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )
        try:  # setup.py turns a failed build into a warning, so the import is the check
            from dataprep import _commp  # noqa: F811
        except ImportError:
            pytest.fail(f"the native commP kernel could not be built:\n{build.stderr}")
    return _commp


@pytest.fixture(scope="module")
def native():  # type: ignore[no-untyped-def]
    return _native_module()


def _factory(kind: str) -> Factory:
    if kind == "python":
        return commp.PythonCommP
    mod = _native_module()
    if kind == "portable":
        return lambda: mod.CommP(portable=True)
    return mod.CommP


@pytest.fixture(params=KERNELS)
def make(request: pytest.FixtureRequest) -> Factory:
    return _factory(request.param)


def _digest(factory: Factory, data: bytes | bytearray | memoryview) -> tuple[bytes, int]:
    cp = factory()
    cp.update(data)
    return cp.digest()


def _cid(commitment: bytes) -> str:
    return commp.piece_cid_str(commitment)


def _all_kernels(data: bytes) -> tuple[bytes, int]:
    """The digest, after asserting that the three kernels agree on it."""
    results = {k: _digest(_factory(k), data) for k in KERNELS}
    assert results["python"] == results["portable"] == results["native"], len(data)
    return results["native"]


# --- reference vectors (../shared/vectors) ------------------------------------------------

SMALL_FILES = [f for f in vectors()["files"] if 65 <= f["size"] <= 8 * MiB]


def _check_piece(commitment: bytes, size: int, vec: dict) -> None:  # type: ignore[type-arg]
    assert (_cid(commitment), size) == (vec["pieceCid"], vec["paddedPieceSize"])
    for padded in vec["pieceCidPaddedTo"]:
        target = padded["minPieceSize"]
        got, got_size = commp.padded_piece(commitment, size, target)
        assert (_cid(got), got_size) == (padded["pieceCid"], padded["paddedPieceSize"])


@pytest.mark.parametrize("vec", SMALL_FILES, ids=lambda v: v["name"])
def test_generated_payloads_give_the_reference_piece_cids_and_padded_sizes(make, vec) -> None:  # type: ignore[no-untyped-def]
    cp = make()
    for block in stream(vec["seed"], vec["size"]):
        cp.update(block)
    assert cp.total == vec["size"]
    _check_piece(*cp.digest(), vec)


@pytest.mark.slow
def test_one_gib_payload_gives_the_reference_piece_cid_natively(native) -> None:  # type: ignore[no-untyped-def]
    (vec,) = [f for f in vectors()["files"] if f["size"] == 1 << 30]
    cp = native.CommP()
    for block in stream(vec["seed"], vec["size"]):
        cp.update(block)
    _check_piece(*cp.digest(), vec)


@pytest.mark.parametrize("name", ["size-0", "size-1", "size-64"])
def test_payloads_under_65_bytes_are_refused(make, name) -> None:  # type: ignore[no-untyped-def]
    cp = make()
    cp.update(content(name, int(name.split("-")[1])))
    with pytest.raises(ValueError, match="at least 65 bytes"):
        cp.digest()


@pytest.mark.parametrize("name", ["size-0", "size-1", "size-64"])
def test_short_payloads_zero_padded_to_one_quad_match_the_npm_libraries(make, name) -> None:  # type: ignore[no-untyped-def]
    # The npm libraries zero-pad short payloads to 127 bytes; with the padding done by hand,
    # our commP of those 127 bytes must give their CIDs.
    vec = next(f for f in vectors()["files"] if f["name"] == name)
    data = content(name, vec["size"])
    _check_piece(*_digest(make, data + bytes(127 - len(data))), vec)


@pytest.mark.parametrize("name", ["size-0", "size-1048577", "size-5242883"])
def test_reference_cars_give_their_piece_cids(make, name) -> None:  # type: ignore[no-untyped-def]
    vec = car_vector(name)
    car, _ = single_file_car(name, int(name.split("-")[1]))
    assert hashlib.sha256(car).hexdigest() == vec["sha256"]  # the input is the reference CAR
    _check_piece(*_digest(make, car), vec)


# --- SPEC §11 vectors 9–13 and 35 --------------------------------------------------------

def _car_of_one_raw_block(data: bytes) -> bytes:
    """CAR bytes assembled from SPEC vector 4's header hex, root = raw(data), one block."""
    cid = raw_cid(data)
    header = bytes.fromhex("3aa265726f6f747381d82a582500") + cid + bytes.fromhex("6776657273696f6e01")
    return header + bytes([len(cid) + len(data)]) + cid + data


def test_car_assembled_from_spec_hex_is_the_100_byte_car_of_test_txt() -> None:
    car = _car_of_one_raw_block(b"hello")
    assert car[:59].hex() == (
        "3aa265726f6f747381d82a582500015512202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e"
        "73043362938b98246776657273696f6e01"
    )
    assert len(_car_of_one_raw_block(b"test")) == 100


@pytest.mark.parametrize(
    ("payload", "min_size", "cid", "size"),
    [
        (b"test", MiB, "baga6ea4seaqpikooah5wmbpjmnvx3ysyf36xagymjtbccnf5twt2cpaqcgcwqha", MiB),
        (b"test", 1, "baga6ea4seaqc4ck2sc77oipu35zq3a5hfhq7jax7247wfq3xxq2qlhp63kjfwgq", 128),
        (b"hello", MiB, "baga6ea4seaqddc4kqdxmnglxhmrfxkx2cd7hl6kounifgewgb2hdthmeddfe4hy", MiB),
        (b"hello", 1, "baga6ea4seaqnbst6g23mrgfdy6phokgl6wu5hwjgwjm52ppx2ctjvdsqsczmkmq", 128),
        (b"", MiB, "baga6ea4seaqf4nwjyuca7vgdqto4qbjpsxo6gdixprrx5jjbtxodjs2hcaak2ey", MiB),
    ],
    ids=["v9-test-1MiB", "v10-test-natural", "v12-hello-1MiB", "v12-hello-natural", "v13-empty-1MiB"],
)
def test_spec_vectors_9_10_12_13_piece_cids(payload, min_size, cid, size) -> None:  # type: ignore[no-untyped-def]
    car = EMPTY_CAR if payload == b"" else _car_of_one_raw_block(payload)
    piece, piece_size = commp.compute_piece(car, min_size)
    assert (commp.piece_cid_str(piece), piece_size) == (cid, size)


# SPEC §7.3: the empty file is one block `24` + CID, after a header rooted at that CID.
EMPTY_CAR = (
    bytes.fromhex("3aa265726f6f747381d82a582500") + EMPTY_FILE_CID + bytes.fromhex("6776657273696f6e01")
    + b"\x24" + EMPTY_FILE_CID
)


def test_spec_vector_11_zero_padding_the_car_to_1040384_bytes_equals_padcommp(make) -> None:  # type: ignore[no-untyped-def]
    car = _car_of_one_raw_block(b"test")
    commitment, size = _digest(make, car + bytes(1040384 - len(car)))
    assert (_cid(commitment), size) == (
        "baga6ea4seaqpikooah5wmbpjmnvx3ysyf36xagymjtbccnf5twt2cpaqcgcwqha", MiB)


@pytest.mark.parametrize(("x", "want"), [(0, 1), (1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 32), (33, 64)])
def test_next_pow2_matches_spec_vector_35(x: int, want: int) -> None:
    assert commp.next_pow2(x) == want


# --- kernels agree with each other -----------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_kernels_agree_on_random_inputs_of_0_to_300_bytes(data: bytes) -> None:
    if len(data) < commp.MIN_INPUT:
        for kind in KERNELS:
            with pytest.raises(ValueError):
                _digest(_factory(kind), data)
    else:
        _all_kernels(data)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=600), st.sampled_from([-1, 0, 1]), st.integers(0, 2**32))
def test_kernels_agree_on_multiples_of_127_plus_or_minus_one(quads, delta, seed) -> None:  # type: ignore[no-untyped-def]
    size = quads * 127 + delta
    if size >= commp.MIN_INPUT:
        _all_kernels(random.Random(seed).randbytes(size))


UNIT = 127 * 256  # one kernel unit: boundaries around it are where bugs would hide


@pytest.mark.parametrize(
    "size",
    [MiB - 1, MiB, MiB + 1, UNIT - 1, UNIT, UNIT + 1, 2 * UNIT + 127, 3 * MiB + 17, 5 * MiB - 3],
)
def test_kernels_agree_on_boundary_and_multi_mib_sizes(size: int) -> None:
    _all_kernels(content(f"commp-{size}", size))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_random_chunkings_of_update_give_the_one_call_digest(data) -> None:  # type: ignore[no-untyped-def]
    kind = data.draw(st.sampled_from(KERNELS))
    payload = CHUNKING_INPUT[: data.draw(st.integers(min_value=65, max_value=len(CHUNKING_INPUT)))]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=12)))
    cp = _factory(kind)()
    wrap = data.draw(st.sampled_from([bytes, bytearray, memoryview]))
    for start, end in zip([0, *cuts], [*cuts, len(payload)]):
        cp.update(wrap(payload[start:end]))
    assert cp.total == len(payload)
    assert cp.digest() == ONE_CALL.setdefault(len(payload), _digest(_factory("native"), payload))


CHUNKING_INPUT = content("commp-chunking", 3 * UNIT + 500)
ONE_CALL: dict[int, tuple[bytes, int]] = {}


def test_digest_keeps_the_state_so_streaming_can_go_on(make) -> None:  # type: ignore[no-untyped-def]
    data = content("commp-resume", 2 * UNIT + 1000)
    cp = make()
    cp.update(data[:100])
    first = cp.digest()
    assert cp.digest() == first
    cp.update(data[100:])
    assert cp.digest() == _digest(make, data)
    assert first == _digest(make, data[:100])


def test_native_kernel_uses_sha_ni_exactly_when_the_cpu_has_it(native) -> None:  # type: ignore[no-untyped-def]
    assert native.CommP().kernel == ("sha-ni" if native.HAVE_SHANI else "portable")
    assert native.CommP(portable=True).kernel == "portable"


# --- padding, CIDs, compute_piece ---------------------------------------------------------

@pytest.mark.parametrize(("size", "to"), [(200, 4096), (127 * 8, 128 * 64), (70_000, MiB)])
def test_pad_commp_equals_appending_zero_bytes(size: int, to: int) -> None:
    data = content("commp-pad", size)
    commitment, natural = _digest(commp.CommP, data)
    padded = _digest(commp.CommP, data + bytes(to * 127 // 128 - size))
    assert (commp.pad_commp(commitment, natural, to), to) == padded


def test_zero_commitment_is_the_commp_of_zero_bytes() -> None:
    for level in (2, 5, 12):
        size = 32 << level
        assert _digest(commp.CommP, bytes(size * 127 // 128)) == (commp.zero_commitment(level), size)
    assert commp.zero_commitment(0) == bytes(32)


def test_padding_refuses_bad_sizes() -> None:
    c = bytes(32)
    for args in ((c, 128, 64), (c, 128, 1000), (c, 100, 1024), (b"short", 128, 256)):
        with pytest.raises(ValueError):
            commp.pad_commp(*args)
    with pytest.raises(ValueError, match="power of two"):
        commp.padded_piece(c, 128, 3 * MiB)
    assert commp.padded_piece(c, 2 * MiB, 3 * MiB // 2 + 1) == (c, 2 * MiB)  # min below natural


def test_piece_cid_bytes_and_string_form() -> None:
    c = bytes(range(32))
    cid = commp.piece_cid(c)
    assert cid == bytes.fromhex("0181e203922020") + c
    assert commp.piece_cid_str(c) == commp.piece_cid_str(cid)
    assert commp.piece_cid_str(c).startswith("baga6ea4seaq")
    with pytest.raises(ValueError):
        commp.piece_cid_str(b"\x01" * 39)


def test_compute_piece_reads_files_and_bytes_alike(tmp_path: Path) -> None:
    data = content("commp-file", 9 * MiB + 5)
    path = tmp_path / "payload.car"
    path.write_bytes(data)
    with open(path, "rb") as fobj:
        from_file = commp.compute_piece(fobj, MiB)
    assert from_file == commp.compute_piece(memoryview(data), MiB)
    assert from_file[1] == 16 * MiB


# --- kernel choice, threads ----------------------------------------------------------------

def _import_kernel(env_value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIECEWORKS_")}
    if env_value is not None:
        env["PIECEWORKS_COMMP"] = env_value
    code = "from dataprep import commp; print(commp.KERNEL, commp.CommP.__name__)"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_kernel_is_native_when_built_and_python_with_one_warning_when_forced(native) -> None:  # type: ignore[no-untyped-def]
    auto = _import_kernel(None)
    assert auto.stdout.split() == ["native", "CommP"] and "WARNING" not in auto.stderr
    forced = _import_kernel("python")
    assert forced.stdout.split() == ["python", "PythonCommP"]
    assert forced.stderr.count("WARNING") == 1 and "pure Python" in forced.stderr


def test_native_update_releases_the_gil(native) -> None:  # type: ignore[no-untyped-def]
    # If update() held the GIL, this thread could not count at all until it returned.
    data = bytes(128 * MiB)
    done = threading.Event()

    def work() -> None:
        native.CommP().update(data)
        done.set()

    worker = threading.Thread(target=work)
    spins = 0
    worker.start()
    while not done.is_set():
        spins += 1
    worker.join()
    assert spins > 10_000


def _run_threads(work: Callable[[], None], threads: int) -> list[tuple[float, float]]:
    """(start, end) of `work` in each of `threads` threads started together."""
    barrier = threading.Barrier(threads)
    spans: list[tuple[float, float]] = []

    def run() -> None:
        barrier.wait()
        start = time.perf_counter()
        work()
        spans.append((start, time.perf_counter()))

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return spans


def _speedup(work: Callable[[], None]) -> float:
    """Throughput of two threads running `work` at once, over one thread's."""
    ((s1, e1),) = _run_threads(work, 1)
    two = _run_threads(work, 2)
    return 2 * (e1 - s1) / (max(e for _, e in two) - min(s for s, _ in two))


def test_two_threads_hash_at_the_same_time(native) -> None:  # type: ignore[no-untyped-def]
    # Holds on a busy machine too: with the GIL held the two updates could not overlap.
    data = bytes(32 * MiB)
    (a0, a1), (b0, b1) = _run_threads(lambda: native.CommP().update(data), 2)
    overlap = min(a1, b1) - max(a0, b0)
    assert overlap > 0.5 * min(a1 - a0, b1 - b0)


@pytest.mark.slow
def test_two_threads_hash_nearly_twice_as_fast_as_one(native) -> None:  # type: ignore[no-untyped-def]
    # NOTE: other processes may take one of the 2 cores, so up to 5 attempts, the best
    # counting. Judged against hashlib's bulk SHA-256 (which releases the GIL) measured in
    # the same attempts: commP must reach 1.5x, or scale at least 0.9x as well as hashlib.
    data = bytes(64 * MiB)
    best = control = 0.0
    for _ in range(5):
        best = max(best, _speedup(lambda: native.CommP().update(data)))
        if best >= 1.5:
            return
        control = max(control, _speedup(lambda: hashlib.sha256(memoryview(data)[: 16 * MiB]).digest()))
    assert best >= min(1.5, 0.9 * control), (
        f"two threads: commP {best:.2f}x, hashlib {control:.2f}x one thread's throughput")


def test_one_object_fed_from_two_threads_at_once_raises(native) -> None:  # type: ignore[no-untyped-def]
    cp = native.CommP()
    data = bytes(256 * MiB)
    worker = threading.Thread(target=cp.update, args=(data,))
    worker.start()
    raised = False
    while worker.is_alive() and not raised:
        try:
            cp.update(b"")
        except RuntimeError:
            raised = True
    worker.join()
    assert raised
    assert cp.total == len(data)
