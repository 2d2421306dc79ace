"""CID bytes, varints and string forms (SPEC §7.3, §11 vectors 1–2)."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataprep.cid import (
    CODEC_DAG_PB,
    CODEC_RAW,
    EMPTY_FILE_CID,
    InvalidCid,
    cid_codec,
    cid_digest,
    cid_from_str,
    cid_to_str,
    dag_pb_cid,
    decode_uvarint,
    encode_uvarint,
    raw_cid,
    read_cid,
)
from tests.vectors import content, vectors


def test_raw_cid_of_test_matches_the_go_vector() -> None:
    assert cid_to_str(raw_cid(b"test")) == "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba"


def test_empty_file_cid_is_the_raw_cid_of_nothing() -> None:
    assert EMPTY_FILE_CID == raw_cid(b"")
    assert cid_to_str(EMPTY_FILE_CID) == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def test_raw_cids_of_every_single_chunk_vector_file_match() -> None:
    checked = 0
    for item in vectors()["files"]:
        if item["chunks"] == 1 and item["size"] <= 1 << 20:
            data = content(item["seed"], item["size"])
            assert cid_to_str(raw_cid(data)) == item["fileCidSingularity"], item["name"]
            checked += 1
    assert checked >= 8


def test_cids_are_36_bytes_with_a_constant_prefix() -> None:
    digest = hashlib.sha256(b"abc").digest()
    assert raw_cid(b"abc") == b"\x01\x55\x12\x20" + digest
    assert dag_pb_cid(b"abc") == b"\x01\x70\x12\x20" + digest
    assert cid_codec(raw_cid(b"abc")) == CODEC_RAW
    assert cid_codec(dag_pb_cid(b"abc")) == CODEC_DAG_PB
    assert cid_digest(raw_cid(b"abc")) == digest


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (16384, "808001"),
     (2**63, "80808080808080808001"), (2**64 - 1, "ffffffffffffffffff01")],
)
def test_uvarint_encodes_known_values(value: int, encoded: str) -> None:
    assert encode_uvarint(value).hex() == encoded
    assert decode_uvarint(bytes.fromhex(encoded)) == (value, len(encoded) // 2)


def test_uvarint_rejects_truncation_and_negative_numbers() -> None:
    with pytest.raises(InvalidCid):
        decode_uvarint(b"\x80\x80")
    with pytest.raises(ValueError):
        encode_uvarint(-1)


@given(st.integers(min_value=0, max_value=2**64 - 1), st.binary(max_size=8))
def test_uvarint_round_trips_with_trailing_bytes(value: int, tail: bytes) -> None:
    encoded = encode_uvarint(value)
    assert decode_uvarint(encoded + tail) == (value, len(encoded))


@given(st.binary(max_size=200), st.sampled_from([raw_cid, dag_pb_cid]))
def test_cid_strings_round_trip(data: bytes, make) -> None:  # type: ignore[no-untyped-def]
    cid = make(data)
    text = cid_to_str(cid)
    assert text.startswith("bafkrei" if make is raw_cid else "bafybei")
    assert cid_from_str(text) == cid


def test_cidv0_strings_and_base58_parse() -> None:
    v0 = b"\x12\x20" + hashlib.sha256(b"hello").digest()
    text = cid_to_str(v0)
    assert text.startswith("Qm") and len(text) == 46
    assert cid_from_str(text) == v0
    assert read_cid(v0 + b"tail") == (v0, 34)


def test_bad_cid_strings_are_rejected() -> None:
    for bad in ["", "xyz", "b!!!", "bafkrei", cid_to_str(raw_cid(b"x")) + "aa"]:
        with pytest.raises(InvalidCid):
            cid_from_str(bad)


def test_piece_cids_with_multi_byte_varints_parse_and_print_back() -> None:
    # fil-commitment-unsealed 0xf101 and sha2-256-trunc254-padded 0x1012 take 3 and 2 bytes.
    text = vectors()["cars"][0]["pieceCid"]
    cid = cid_from_str(text)
    assert cid[:7] == b"\x01\x81\xe2\x03\x92\x20\x20" and len(cid) == 39
    assert cid_codec(cid) == 0xF101
    assert len(cid_digest(cid)) == 32
    assert cid_to_str(cid) == text
