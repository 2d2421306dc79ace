"""pieceworks' directories.data format: round trips, determinism, export order (SPEC §8.3–8.4)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep.cid import EMPTY_FILE_CID, cid_to_str, raw_cid
from dataprep.directory import DirEntry
from dataprep.dirstate import MAGIC, DirectoryState, DirStateError
from dataprep.unixfs import assemble_file

EMPTY_DIR = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"


def test_empty_data_is_a_new_empty_directory() -> None:
    for blob in (None, b""):
        state = DirectoryState.from_bytes(blob)
        assert len(state.directory) == 0 and state.additional == {}
        assert cid_to_str(state.node().cid) == EMPTY_DIR


def test_state_round_trips_entries_sizes_and_additional_blocks() -> None:
    dag = assemble_file([(raw_cid(b"a"), 1 << 20), (raw_cid(b"b"), 5)])
    state = DirectoryState()
    state.add_file("big.bin", raw_cid(b"big"), 5 << 30)  # > 4 GiB: kept in full
    state.add_file("split.bin", dag.root_cid, dag.size, dag.blocks)
    child = DirectoryState([DirEntry("x", raw_cid(b"x"), 1)]).node()
    state.add_child("sub", child)
    blob = state.to_bytes()
    assert blob.startswith(MAGIC)
    again = DirectoryState.from_bytes(blob)
    assert again == state
    assert again.directory.get("big.bin") == DirEntry("big.bin", raw_cid(b"big"), 5 << 30)
    assert again.directory.get("sub") == DirEntry("sub", child.cid, child.cumulative_size)
    assert again.additional == dict(dag.blocks)
    assert again.node() == state.node()


def test_serialization_is_deterministic_whatever_the_insertion_order() -> None:
    names = [f"file-{i}" for i in range(200)]
    one, two = DirectoryState(), DirectoryState()
    for name in names:
        one.add_file(name, raw_cid(name.encode()), len(name), [(raw_cid(b"p" + name.encode()), b"p" + name.encode())])
    for name in reversed(names):
        two.add_file(name, raw_cid(name.encode()), len(name), [(raw_cid(b"p" + name.encode()), b"p" + name.encode())])
    assert one.to_bytes() == two.to_bytes()
    assert len(one.to_bytes()) < 200 * (36 + 36 + 10)  # compressed


def test_export_puts_node_blocks_first_then_additional_each_sorted_and_skips_empty_ones() -> None:
    state = DirectoryState()
    state.add_file("hello", raw_cid(b"hello"), 5, [(raw_cid(b"hello"), b"hello")])
    state.additional[raw_cid(b"placeholder")] = b""  # an empty non-file block is skipped
    state.additional[EMPTY_FILE_CID] = b""  # the empty-file block is kept
    blocks = state.export_blocks()
    assert blocks[0] == (state.node().cid, state.node().data)
    assert blocks[1:] == sorted([(raw_cid(b"hello"), b"hello"), (EMPTY_FILE_CID, b"")])


def test_export_of_a_sharded_directory_has_every_shard_sorted_by_cid() -> None:
    state = DirectoryState(DirEntry(f"{i:05d}" + "n" * 150, raw_cid(str(i).encode()), i) for i in range(2000))
    assert state.directory.sharded
    blocks = state.export_blocks()
    assert len(blocks) == len(state.node().blocks) > 1
    assert [cid for cid, _ in blocks] == sorted(cid for cid, _ in blocks)
    assert DirectoryState.from_bytes(state.to_bytes()).node().cid == state.node().cid


@pytest.mark.parametrize(
    "blob",
    [b"PWD", b"XXXX\x00", b"PWD1\x07", b"PWD1\x01not zlib", b"PWD1\x00\x05", b"PWD1\x00\x00\x00\x00"],
)
def test_corrupt_blobs_are_refused(blob: bytes) -> None:
    with pytest.raises(DirStateError):
        DirectoryState.from_bytes(blob)


_name = st.text(st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(_name, st.tuples(st.binary(max_size=6), st.integers(0, 2**64 - 1)), max_size=30),
    st.lists(st.binary(max_size=50), max_size=5),
)
def test_random_states_round_trip(spec: dict[str, tuple[bytes, int]], extra: list[bytes]) -> None:
    state = DirectoryState(
        [DirEntry(n, raw_cid(s), size) for n, (s, size) in spec.items()],
        {raw_cid(b): b for b in extra},
    )
    again = DirectoryState.from_bytes(state.to_bytes())
    assert again == state
    assert again.node().cid == state.node().cid
    assert again.to_bytes() == state.to_bytes()
