"""CAR v1 framing and whole single-file CARs against the reference vectors (SPEC §7.2, §7.4)."""
from __future__ import annotations

import hashlib
import io

import pytest

from dataprep.car import (
    CarFormatError,
    CarWriter,
    car_header,
    encode_block,
    parse_car_header,
    read_car,
    read_car_roots,
)
from dataprep.cid import EMPTY_FILE_CID, cid_to_str, dag_pb_cid, raw_cid
from tests.vectors import car_vector, single_file_car

HEADER_HELLO = (
    "3aa265726f6f747381d82a582500015512202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1f"
    "a7425e73043362938b98246776657273696f6e01"
)


def test_header_for_a_raw_hello_root_matches_the_spec_bytes() -> None:
    assert car_header(raw_cid(b"hello")).hex() == HEADER_HELLO


def test_header_for_any_36_byte_root_is_59_bytes() -> None:
    for root in (raw_cid(b""), dag_pb_cid(b"x")):
        header = car_header(root)
        assert len(header) == 59 and header[0] == 0x3A
        assert parse_car_header(header) == ([root], 59)


def test_block_of_hello_under_a_cidv0_is_40_bytes_as_in_go() -> None:
    # Go's blocks.NewBlock makes a CIDv0 (34 bytes): 1 + 34 + 5 = 40.
    v0 = b"\x12\x20" + hashlib.sha256(b"hello").digest()
    assert len(encode_block(v0, b"hello")) == 40
    assert encode_block(v0, b"hello")[0] == 0x27


def test_block_of_raw_test_is_the_spec_framing() -> None:
    block = encode_block(raw_cid(b"test"), b"test")
    assert block == b"\x28" + raw_cid(b"test") + b"test"


def test_empty_file_block_is_37_bytes_starting_0x24() -> None:
    block = encode_block(EMPTY_FILE_CID, b"")
    assert len(block) == 37 and block[0] == 0x24


def test_writer_without_root_uses_the_first_block_and_tracks_offsets() -> None:
    out = io.BytesIO()
    writer = CarWriter(out)
    assert writer.offset == 0 and writer.root is None
    first = writer.write_block(raw_cid(b"test"), b"test")
    assert writer.root == raw_cid(b"test")
    assert first.car_offset == 59 and first.block_length == 41 and first.varint == b"\x28"
    big = b"x" * 200
    second = writer.write_block(raw_cid(big), big)
    assert second.car_offset == 100 and second.varint == b"\xec\x01" and second.block_length == 238
    assert writer.offset == len(out.getvalue()) == 338
    assert writer.block_count == 2
    blocks = list(read_car(out.getvalue()))
    assert [(b.cid, b.data, b.car_offset, b.block_length) for b in blocks] == [
        (raw_cid(b"test"), b"test", 59, 41),
        (raw_cid(big), big, 100, 238),
    ]


def test_inline_pack_of_test_txt_is_the_100_byte_car_of_the_go_test() -> None:
    out = io.BytesIO()
    CarWriter(out).write_block(raw_cid(b"test"), b"test")
    car = out.getvalue()
    assert len(car) == 100
    assert car == car_header(raw_cid(b"test")) + b"\x28" + raw_cid(b"test") + b"test"


def test_writer_with_nothing_written_writes_nothing() -> None:
    out = io.BytesIO()
    writer = CarWriter(out)
    assert writer.offset == 0 and out.getvalue() == b""
    with pytest.raises(CarFormatError):
        writer.write_header()


def test_writer_with_a_given_root_writes_the_header_first(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = dag_pb_cid(b"\x0a\x02\x08\x01")
    path = tmp_path / "dag.car"
    with open(path, "wb") as fobj:
        writer = CarWriter(fobj, root)
        writer.write_header()
        record = writer.write_block(raw_cid(b"hello"), b"hello")
    assert record.car_offset == 59
    assert read_car_roots(path) == [root]
    assert [b.data for b in read_car(path)] == [b"hello"]


def test_reader_rejects_truncated_cars() -> None:
    out = io.BytesIO()
    CarWriter(out).write_block(raw_cid(b"test"), b"test")
    with pytest.raises(CarFormatError):
        list(read_car(out.getvalue()[:-1]))
    with pytest.raises(CarFormatError):
        list(read_car(out.getvalue()[:30]))


@pytest.mark.parametrize("name", ["size-0", "size-1048577", "size-5242883"])
def test_single_file_cars_match_the_reference_bytes(name: str) -> None:
    vec = car_vector(name)
    size = int(name.split("-")[1])
    car, count = single_file_car(name, size)
    assert len(car) == vec["size"]
    assert hashlib.sha256(car).hexdigest() == vec["sha256"]
    assert count == vec["blockCount"]
    assert [cid_to_str(r) for r in read_car_roots(car)] == vec["roots"]
    blocks = list(read_car(car))
    assert len(blocks) == vec["blockCount"]
    assert cid_to_str(blocks[-1].cid) == vec["fileCidSingularity"]
    for block in blocks:
        assert car[block.car_offset : block.car_offset + block.block_length].endswith(block.data)


@pytest.mark.parametrize(
    ("size", "expected"),
    [(0, 96), (1, 97), (1024, 1121), (2048, 2145), (1 << 20, 1048674), ((2 << 20) - 1, 2097434),
     (2 << 20, 2097436), ((2 << 20) + 1, 2097520), ((10 << 20) - 1, 10486755),
     (10 << 20, 10486756), ((10 << 20) + 1, 10486840)],
)
def test_single_file_car_lengths_match_the_go_assembler_test(size: int, expected: int) -> None:
    car, _ = single_file_car(f"len-{size}", size)
    assert len(car) == expected


def test_reader_accepts_a_binary_file_object() -> None:
    out = io.BytesIO()
    CarWriter(out).write_block(raw_cid(b"test"), b"test")
    out.seek(0)
    assert [(b.cid, b.data) for b in read_car(out)] == [(raw_cid(b"test"), b"test")]
