"""File DAGs: parent node bytes, the 1024-link balanced tree, and the vector file CIDs (SPEC §7.3)."""
from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep.cid import EMPTY_FILE_CID, cid_to_str, dag_pb_cid, raw_cid
from dataprep.dagwalk import DagWalkError, read_file
from dataprep.unixfs import (
    TYPE_FILE,
    assemble_file,
    build_file_dag,
    cumulative_size,
    decode_node,
    decode_unixfs,
    encode_file_node,
    file_dag_from_chunks,
    iter_chunks,
    leaf,
    range_root,
)
from tests.vectors import file_vector, stream, vectors

HELLO = raw_cid(b"hello")
WORLD = raw_cid(b"world")


def test_parent_of_hello_and_world_matches_the_go_vector() -> None:
    root, size, blocks = assemble_file([(HELLO, 5), (WORLD, 5)])
    assert cid_to_str(root) == "bafybeiejlvvmfokp5c6q2eqgbfjeaokz3nqho5c7yy3ov527vsatgsqfma"
    assert size == 10
    assert len(blocks) == 1 and blocks[0][0] == root
    assert cumulative_size(blocks[0][1]) == 108


def test_parent_node_bytes_follow_the_spec_layout() -> None:
    node = encode_file_node([(HELLO, 5), (WORLD, 5)])
    link = b"\x0a\x24" + HELLO + b"\x12\x00\x18\x05"
    assert node.startswith(b"\x12" + bytes([len(link)]) + link)
    data = b"\x08\x02\x18\x0a\x20\x05\x20\x05"
    assert node.endswith(b"\x0a" + bytes([len(data)]) + data)
    links, payload = decode_node(node)
    assert [(link.cid, link.name, link.tsize) for link in links] == [(HELLO, b"", 5), (WORLD, b"", 5)]
    meta = decode_unixfs(payload or b"")
    assert (meta.type, meta.filesize, meta.blocksizes, meta.data) == (TYPE_FILE, 10, [5, 5], None)


def test_two_thousand_links_make_a_two_level_tree_as_in_go() -> None:
    root, size, blocks = assemble_file([(HELLO, 5)] * 2000)
    assert cid_to_str(root) == "bafybeiamlrjlfotypfc5hse7uenmgmav7yq5vcb75yd7bxh2aaavxbi4ou"
    assert size == 10000
    assert len(blocks) == 3
    assert cid_to_str(blocks[0][0]) == "bafybeidci5xcdskgvefhv3x6kp6zpyxkbiqshqjbpsdgmk2k3mexzaggwi"
    assert blocks[-1][0] == root
    assert cumulative_size(blocks[-1][1]) == 10103
    # Upper-level Tsize and blocksizes carry raw bytes, not cumulative sizes.
    links, payload = decode_node(blocks[-1][1])
    assert [link.tsize for link in links] == [5120, 4880]
    assert decode_unixfs(payload or b"").blocksizes == [5120, 4880]


def test_assembling_one_link_is_refused() -> None:
    with pytest.raises(ValueError, match="links must be more than 1"):
        assemble_file([(HELLO, 5)])


def test_a_leftover_single_link_still_gets_its_own_parent() -> None:
    _root, _size, blocks = build_file_dag([(HELLO, 5)] * 1025)
    assert len(blocks) == 3
    links, _ = decode_node(blocks[1][1])
    assert len(links) == 1
    assert [len(decode_node(b)[0]) for _, b in blocks] == [1024, 1, 2]


def test_range_root_of_zero_and_one_link_builds_nothing() -> None:
    assert range_root([]) == (EMPTY_FILE_CID, 0, [])
    assert range_root([(HELLO, 5)]) == (HELLO, 5, [])


def test_every_block_cid_is_the_hash_of_its_bytes() -> None:
    for cid, data in build_file_dag([(HELLO, 5)] * 3000).blocks:
        assert cid == dag_pb_cid(data)


def _file_cid_streaming(seed: str, size: int) -> str:
    links = [leaf(chunk) for chunk in stream(seed, size)] or [(EMPTY_FILE_CID, 0)]
    return cid_to_str(range_root(links).root_cid)


@pytest.mark.parametrize(
    "item", [f for f in vectors()["files"] if f["size"] <= 64 << 20], ids=lambda f: f["name"]
)
def test_vector_file_cids_match(item: dict) -> None:  # type: ignore[type-arg]
    assert _file_cid_streaming(item["seed"], item["size"]) == item["fileCidSingularity"]


@pytest.mark.slow
def test_the_one_gib_vector_file_cid_matches_streaming() -> None:
    # About 3 s: SHAKE256 generation dominates; only the 1024 leaf CIDs are kept.
    item = file_vector("size-1073741824")
    assert item["chunks"] == 1024
    assert _file_cid_streaming(item["seed"], item["size"]) == item["fileCidSingularity"]


def test_directory_tree_file_cids_match() -> None:
    for item in vectors()["directories"][0]["files"]:
        assert _file_cid_streaming(item["path"], item["size"]) == item["fileCidSingularity"], item["path"]


def test_iter_chunks_reads_full_chunks_from_a_short_reading_stream() -> None:
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._buf = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
            chunk = self._buf.read(min(len(b), 7))
            b[: len(chunk)] = chunk
            return len(chunk)

    data = bytes(range(256)) * 10
    chunks = list(iter_chunks(Trickle(data), 100))
    assert [len(c) for c in chunks] == [100] * 25 + [60]
    assert b"".join(chunks) == data
    assert list(iter_chunks(io.BytesIO(b""), 100)) == []


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=5000), st.integers(min_value=1, max_value=64))
def test_walker_rebuilds_random_bytes_from_leaves_and_file_dag(data: bytes, chunk_size: int) -> None:
    root, leaves = file_dag_from_chunks(iter_chunks(io.BytesIO(data), chunk_size))
    blocks = dict(leaves) | dict(root.blocks)
    assert root.size == len(data)
    assert read_file(blocks.__getitem__, root.root_cid) == data


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=2, max_value=3000))
def test_walker_rebuilds_multi_level_trees(count: int) -> None:
    pieces = [i.to_bytes(2, "big") for i in range(count)]
    leaves = {raw_cid(p): p for p in pieces}
    dag = build_file_dag([(raw_cid(p), 2) for p in pieces])
    assert read_file((leaves | dict(dag.blocks)).__getitem__, dag.root_cid) == b"".join(pieces)


def test_walker_detects_a_corrupt_or_missing_block() -> None:
    dag = assemble_file([(HELLO, 5), (WORLD, 5)])
    good = {HELLO: b"hello", WORLD: b"world", dag.root_cid: dag.blocks[0][1]}
    with pytest.raises(DagWalkError, match="does not match"):
        read_file((good | {WORLD: b"w0rld"}).__getitem__, dag.root_cid)
    with pytest.raises(DagWalkError, match="missing"):
        read_file({k: v for k, v in good.items() if k != HELLO}.__getitem__, dag.root_cid)
    lying = assemble_file([(HELLO, 5), (WORLD, 6)])
    with pytest.raises(DagWalkError, match="blocksize"):
        read_file((good | dict(lying.blocks)).__getitem__, lying.root_cid)
