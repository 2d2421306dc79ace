"""Directory nodes: basic layout, the dirtree vector, the HAMT switch and HAMT structure (SPEC §8.2)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep.cid import cid_from_str, cid_to_str, dag_pb_cid, raw_cid
from dataprep.dagwalk import list_directory, read_file, resolve_path
from dataprep.directory import (
    SHARD_THRESHOLD,
    Directory,
    DirectoryError,
    DirectoryView,
    DirEntry,
    hamt_hash,
    lookup,
    read_entries,
)
from dataprep.unixfs import (
    TYPE_HAMT_SHARD,
    assemble_file,
    cumulative_size,
    decode_node,
    decode_unixfs,
    leaf,
    range_root,
)
from tests.vectors import vectors

EMPTY_DIR = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"


def test_empty_basic_directory_is_the_known_node() -> None:
    node = Directory().build()
    assert node.data.hex() == "0a020801"
    assert cid_to_str(node.cid) == EMPTY_DIR
    assert node.cumulative_size == 4 and node.blocks == [(node.cid, node.data)]


def test_directory_with_a_file_from_links_matches_the_go_test() -> None:
    # Go's AddFileFromLinks adds the file *node*, so its Tsize is the node's cumulative size
    # (108); pack adds files with their raw size instead (see the dirtree test below).
    directory = Directory()
    directory.add("test", raw_cid(b"test"), 4)
    dag = assemble_file([(raw_cid(b"test2"), 5), (raw_cid(b"test3"), 5)])
    directory.add("test2", dag.root_cid, cumulative_size(dag.blocks[-1][1]))
    node = directory.build()
    assert len(decode_node(node.data)[0]) == 2
    assert node.cumulative_size == 213
    assert cid_to_str(node.cid) == "bafybeidu4afscj5gadarvd3rwr5lc2nmkbba473swl7gk3ununaioza4mm"


def test_child_directory_sorts_before_a_later_name_as_in_the_go_resolve_test() -> None:
    child = Directory([DirEntry("test2", raw_cid(b"test2"), 5)]).build()
    root = Directory([DirEntry("test", raw_cid(b"test"), 4)])
    root.add("name", child.cid, child.cumulative_size)
    links, _ = decode_node(root.build().data)
    assert [link.name for link in links] == [b"name", b"test"]


def test_links_are_sorted_by_name_bytes_and_replaced_by_name() -> None:
    directory = Directory()
    for name in ["b", "a", "B", "é", "a0"]:
        directory.add(name, raw_cid(name.encode()), 1)
    directory.add("a", raw_cid(b"new"), 3)
    links, data = decode_node(directory.build().data)
    assert [link.name for link in links] == [b"B", b"a", b"a0", b"b", "é".encode()]
    assert links[1].cid == raw_cid(b"new") and links[1].tsize == 3
    assert data == b"\x08\x01"
    assert directory.remove("a") and not directory.remove("a")
    assert directory.get("a") is None and len(directory) == 4


def test_bad_entry_names_are_refused() -> None:
    for bad in ["", "a/b"]:
        with pytest.raises(DirectoryError):
            Directory().add(bad, raw_cid(b"x"), 1)


def test_dirtree_vector_singularity_style_cids_match() -> None:
    tree = vectors()["directories"][0]
    expected = tree["dircid"]["singularityStyle"]
    dirs: dict[str, Directory] = {"": Directory()}
    for item in tree["files"]:
        rel = item["path"].removeprefix("dirtree/")
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            dirs.setdefault("/".join(parts[:depth]), Directory())
        # File entries carry the file's raw byte size as Tsize (SPEC §10 #22).
        dirs["/".join(parts[:-1])].add(parts[-1], cid_from_str(expected["files"][rel]), item["size"])
    # Resolve children before parents, as pack does.
    for path in sorted(dirs, key=lambda p: -p.count("/") - bool(p)):
        if path:
            parent, _, name = path.rpartition("/")
            node = dirs[path].build()
            assert cid_to_str(node.cid) == expected["dirs"][path], path
            dirs[parent].add(name, node.cid, node.cumulative_size)
    assert cid_to_str(dirs[""].build().cid) == expected["rootCid"]


def _names(count: int, length: int) -> list[str]:
    return [f"{i:06d}-" + "x" * (length - 7) for i in range(count)]


def test_hamt_switch_happens_exactly_at_the_threshold() -> None:
    cid = raw_cid(b"same")  # 36 bytes
    directory = Directory()
    # 1023 entries of 220 + 36 bytes = 261888; one more of 256 - 36 + x reaches 262144.
    for name in _names(1023, 220):
        directory.add(name, cid, 1)
    assert directory.estimated_size == SHARD_THRESHOLD - 256
    directory.add("y" * 219, cid, 1)  # 255 bytes: one short
    assert directory.estimated_size == SHARD_THRESHOLD - 1 and not directory.sharded
    assert decode_unixfs(decode_node(directory.build().data)[1] or b"").type == 1
    directory.add("y" * 219, raw_cid(b"other"), 2)  # replacing keeps the estimate
    assert not directory.sharded
    directory.add("z", cid, 1)
    assert directory.estimated_size == SHARD_THRESHOLD + 36 and directory.sharded
    assert decode_unixfs(decode_node(directory.build().data)[1] or b"").type == TYPE_HAMT_SHARD
    directory.remove("z")
    assert not directory.sharded  # back to basic below the threshold


def test_large_hamt_follows_the_spec_rules_and_finds_every_entry() -> None:
    entries = [DirEntry(name, raw_cid(name.encode()), i) for i, name in enumerate(_names(10_000, 120))]
    directory = Directory(entries)
    assert directory.sharded
    built = directory.build()
    blocks = dict(built.blocks)
    assert len(blocks) == len(built.blocks) > 1
    for cid, data in built.blocks:
        assert cid == dag_pb_cid(data)
        links, payload = decode_node(data)
        meta = decode_unixfs(payload or b"")
        assert (meta.type, meta.hash_type, meta.fanout) == (TYPE_HAMT_SHARD, 0x22, 256)
        assert payload is not None and payload.startswith(b"\x08\x05\x12")
        assert payload.endswith(b"\x28\x22\x30\x80\x02")
        indexes = [int(link.name[:2], 16) for link in links]
        assert indexes == sorted(set(indexes))
        bits = int.from_bytes(meta.data or b"", "big")
        assert bits == sum(1 << i for i in indexes)
        assert meta.data and meta.data[0] != 0  # leading zero bytes stripped
        for link in links:
            assert link.name[:2] == link.name[:2].upper()
            if len(link.name) == 2:  # sub-shard: Tsize is its cumulative size
                assert link.tsize == cumulative_size(blocks[link.cid])
                assert len(read_entries(blocks[link.cid], blocks.__getitem__)) >= 2
    # The root holds all 256 slots for 10,000 names; every entry sits at its hash path.
    root_links, _ = decode_node(built.data)
    assert len(root_links) == 256
    assert built.cumulative_size == len(built.data) + sum(link.tsize for link in root_links)
    assert sorted(read_entries(built.data, blocks.__getitem__)) == sorted(entries)
    view = DirectoryView(built.data, blocks.__getitem__)
    for entry in entries:
        assert view.lookup(entry.name) == entry
    assert view.lookup("missing") is None
    assert lookup(built.data, blocks.__getitem__, entries[17].name) == entries[17]
    assert set(list_directory(blocks.__getitem__, built.cid)) == {e.name for e in entries}


def test_hamt_places_entries_by_hash_byte_at_each_depth() -> None:
    entries = [DirEntry(name, raw_cid(b"x"), 1) for name in _names(3000, 100)]
    built = Directory(entries).build()
    blocks = dict(built.blocks)

    def check(data: bytes, depth: int, prefix: bytes) -> int:
        count = 0
        for link in decode_node(data)[0]:
            index = int(link.name[:2], 16)
            if len(link.name) == 2:
                count += check(blocks[link.cid], depth + 1, prefix + bytes([index]))
            else:
                digest = hamt_hash(link.name[2:])
                assert digest[: depth + 1] == prefix + bytes([index])
                count += 1
        return count

    assert check(built.data, 0, b"") == 3000


def test_hamt_does_not_depend_on_insertion_order() -> None:
    names = _names(2500, 110)
    forward = Directory([DirEntry(n, raw_cid(n.encode()), 1) for n in names]).build().cid
    backward = Directory([DirEntry(n, raw_cid(n.encode()), 1) for n in reversed(names)]).build().cid
    assert forward == backward


def test_murmur3_hash_is_the_first_half_big_endian() -> None:
    # murmur3 x64_128("hello", seed 0) = cbd8a7b341bd9b02 5b1e906a48ae1d19 (h1, h2).
    assert hamt_hash(b"hello").hex() == "cbd8a7b341bd9b02"


def test_files_resolve_through_a_directory_dag() -> None:
    data = bytes(range(256)) * 9000
    leaves = [leaf(data[i : i + (1 << 20)]) for i in range(0, len(data), 1 << 20)]
    dag = range_root(leaves)
    sub = Directory([DirEntry("f.bin", dag.root_cid, len(data))]).build()
    root = Directory([DirEntry("sub", sub.cid, sub.cumulative_size)]).build()
    blocks = dict(dag.blocks) | dict(sub.blocks) | dict(root.blocks)
    blocks |= {cid: data[i << 20 : (i + 1) << 20] for i, (cid, _) in enumerate(leaves)}
    assert read_file(blocks.__getitem__, resolve_path(blocks.__getitem__, root.cid, "sub/f.bin")) == data


_name = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(_name, st.tuples(st.binary(max_size=8), st.integers(0, 2**63)), max_size=40))
def test_random_basic_directories_round_trip(spec: dict[str, tuple[bytes, int]]) -> None:
    entries = [DirEntry(name, raw_cid(seed), size) for name, (seed, size) in spec.items()]
    built = Directory(entries).build()
    decoded = read_entries(built.data, {}.__getitem__)
    assert decoded == sorted(entries, key=lambda e: e.name.encode())
    assert Directory(decoded).build() == built


# Root CIDs computed with ipfs-unixfs-importer 17.1.1 (cidVersion 1, rawLeaves, shard threshold
# 256 KiB), an independent implementation, importing one directory "d" whose files hold the
# given text (each a single raw leaf, so Tsize = byte size as in pack). Far above the threshold
# both implementations shard, so the estimate's details do not matter here.
JS_HAMT_VECTORS = [
    ("basic", [("a", "hello"), ("b", "world")], "bafybeiav3l4h5q2yicwdmoohmtwgvgk3dpl7weglefz23jbaazflxu6cbq"),
    (
        "3000 names of 156 bytes",
        [(f"{i:05d}-" + "n" * 150, f"content {i}") for i in range(3000)],
        "bafybeihs63hpgh2zdfrcly4n4z6mw5xvdklmen3olqkbl3lhaydefjp77y",
    ),
    (
        "10000 names, sub-shards three levels down",
        [(f"name-{i}-" + "q" * 30, f"c{i}") for i in range(10000)],
        "bafybeiborchqh6pfggylvgjem4lu2ytiugyqz6saiy2xbelj4vsxlgom3e",
    ),
    (
        "2000 non-ASCII names",
        [(f"größe-é-{i:05d}-" + "ü" * 80, f"inhalt {i}") for i in range(2000)],
        "bafybeiclkvlrt2y6jh7n2xwktxvdrzn3quv7uaqe2tditvfp6sygjuzwjm",
    ),
]


@pytest.mark.parametrize(("label", "files", "expected"), JS_HAMT_VECTORS, ids=[v[0] for v in JS_HAMT_VECTORS])
def test_directories_match_an_independent_unixfs_importer(
    label: str, files: list[tuple[str, str]], expected: str
) -> None:
    directory = Directory(DirEntry(name, raw_cid(text.encode()), len(text.encode())) for name, text in files)
    assert directory.sharded == (len(files) > 2)
    assert cid_to_str(directory.build().cid) == expected


def test_walking_a_missing_path_or_a_file_as_a_directory_fails_clearly() -> None:
    from dataprep.dagwalk import DagWalkError

    sub = Directory([DirEntry("f", raw_cid(b"f"), 1)]).build()
    root = Directory([DirEntry("sub", sub.cid, sub.cumulative_size)]).build()
    dag = assemble_file([(raw_cid(b"a"), 1), (raw_cid(b"b"), 1)])
    blocks = dict(sub.blocks) | dict(root.blocks) | dict(dag.blocks)
    assert resolve_path(blocks.__getitem__, root.cid, "/sub/f") == raw_cid(b"f")
    with pytest.raises(DagWalkError, match="no entry 'g'"):
        resolve_path(blocks.__getitem__, root.cid, "sub/g")
    with pytest.raises(DagWalkError, match="not a directory"):
        list_directory(blocks.__getitem__, dag.root_cid)
    with pytest.raises(DirectoryError, match="not a directory"):
        read_entries(dag.blocks[0][1], blocks.__getitem__)
