"""UnixFS directory nodes: basic directories and HAMT shards (SPEC §8.2, boxo semantics).

Entries are ``(name, cid, size)``: the name as text (encoded UTF-8 with surrogateescape,
so any POSIX file name survives), the child's binary CID, and the size that becomes the
link Tsize: a file's raw byte size, or a child directory's cumulative size.

Basic directory node (dag-pb)::

    ( 12 <len> [0a <len> cid  12 <len> name  18 <Tsize>] )*   0a 02 08 01

Links sorted by name bytes; Data = UnixFS {Type Directory}; the empty directory is
``0a 02 08 01`` = ``bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354``.

Sharding: the directory is a HAMT when Σ(len(name) + len(cid)) over its entries is
≥ 262144 (256 KiB). boxo switches to a HAMT on the add that reaches the threshold and back
to basic on the change that drops below it, so the form is a pure function of the entries
and pieceworks simply decides it at build time.

HAMT shard node::

    links: (slot order)  name = "%02X" % index           → a sub-shard, Tsize = its cumulative size
                         name = "%02X" % index + name    → an entry, Tsize = entry size
    Data:  08 05  12 <len> bitfield  28 22  30 80 02     (HAMTShard, murmur3-x64-64, fanout 256)

hash(name) = the first 64-bit half of murmur3 x64_128 (seed 0) as 8 big-endian bytes; the
slot index at depth d is hash byte d. The bitfield has bit i at byte (31 − i // 8), bit
i % 8, with leading zero bytes stripped. A slot holding one entry stores it directly; two or
more entries in a slot go to a sub-shard one level down. Given the entries, the shard tree is
unique (boxo collapses single-entry sub-shards on removal), so it is built from scratch.
A node's cumulative size is len(node) + Σ link Tsize.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Iterable, Iterator, NamedTuple

import mmh3

from dataprep.cid import DAG_PB_PREFIX, cid_to_str
from dataprep.errors import DataprepError
from dataprep.unixfs import (
    TYPE_DIRECTORY,
    TYPE_HAMT_SHARD,
    PBLink,
    decode_node,
    decode_unixfs,
    encode_node,
    encode_unixfs,
)

SHARD_THRESHOLD = 256 * 1024
HAMT_FANOUT = 256
HAMT_HASH_MURMUR3 = 0x22
BASIC_DIRECTORY_DATA = b"\x08\x01"
_HAMT_MAX_DEPTH = 8  # a 64-bit hash gives 8 one-byte slot indexes


class DirectoryError(DataprepError):
    """A directory node is malformed or cannot be built."""


class DirEntry(NamedTuple):
    """One directory entry: name, child CID bytes, size (the link Tsize)."""

    name: str
    cid: bytes
    size: int


class DirectoryNode(NamedTuple):
    """A built directory: root CID and bytes, cumulative size, and every block of it.

    ``blocks`` holds the root node and, for a HAMT, every shard node, as (cid, bytes),
    root first.
    """

    cid: bytes
    data: bytes
    cumulative_size: int
    blocks: list[tuple[bytes, bytes]]


def name_bytes(name: str) -> bytes:
    """The bytes of an entry name as written in links and hashed by the HAMT."""
    return name.encode("utf-8", "surrogateescape")


def name_text(raw: bytes) -> str:
    """Inverse of `name_bytes`."""
    return raw.decode("utf-8", "surrogateescape")


def hamt_hash(raw_name: bytes) -> bytes:
    """murmur3 x64_128 (seed 0), first 64-bit half, 8 bytes big-endian."""
    # hash_bytes gives h1 then h2, each little-endian; reversing the first 8 gives h1 big-endian.
    return mmh3.hash_bytes(raw_name, 0)[7::-1]


def estimated_size(raw_name: bytes, cid: bytes) -> int:
    """boxo's size estimate of one link: len(name) + len(cid bytes)."""
    return len(raw_name) + len(cid)


def _finish(links: list[tuple[bytes, bytes, int]], data: bytes) -> tuple[bytes, bytes, int]:
    node = encode_node(links, data)
    cid = DAG_PB_PREFIX + hashlib.sha256(node).digest()
    return cid, node, len(node) + sum(tsize for _, _, tsize in links)


def build_basic(entries: Iterable[tuple[bytes, bytes, int]]) -> DirectoryNode:
    """A basic directory node over (name bytes, cid, size) entries (any order)."""
    links = sorted(entries, key=lambda e: e[0])
    cid, node, cumulative = _finish([(c, n, s) for n, c, s in links], BASIC_DIRECTORY_DATA)
    return DirectoryNode(cid, node, cumulative, [(cid, node)])


def _bitfield(indexes: Iterable[int]) -> bytes:
    field = bytearray(HAMT_FANOUT // 8)
    for i in indexes:
        field[len(field) - 1 - i // 8] |= 1 << (i % 8)
    return bytes(field).lstrip(b"\0")


def _build_shard(
    items: list[tuple[bytes, bytes, bytes, int]], depth: int, blocks: list[tuple[bytes, bytes]]
) -> tuple[bytes, bytes, int]:
    """Build one shard over (hash, name, cid, size) items; sub-shards are appended to blocks."""
    if depth >= _HAMT_MAX_DEPTH:
        names = ", ".join(repr(name_text(i[1])) for i in items)
        raise DirectoryError(f"HAMT too deep: the names {names} share a 64-bit hash")
    slots: dict[int, list[tuple[bytes, bytes, bytes, int]]] = {}
    for item in items:
        slots.setdefault(item[0][depth], []).append(item)
    links: list[tuple[bytes, bytes, int]] = []
    for index in sorted(slots):
        group = slots[index]
        prefix = b"%02X" % index
        if len(group) == 1:
            _hash, raw, cid, size = group[0]
            links.append((cid, prefix + raw, size))
        else:
            child_cid, child_node, child_size = _build_shard(group, depth + 1, blocks)
            blocks.append((child_cid, child_node))
            links.append((child_cid, prefix, child_size))
    data = encode_unixfs(
        TYPE_HAMT_SHARD, data=_bitfield(slots), hash_type=HAMT_HASH_MURMUR3, fanout=HAMT_FANOUT
    )
    return _finish(links, data)


def build_hamt(entries: Iterable[tuple[bytes, bytes, int]]) -> DirectoryNode:
    """A HAMT-sharded directory over (name bytes, cid, size) entries (any order)."""
    items = [(hamt_hash(raw), raw, cid, size) for raw, cid, size in entries]
    sub_blocks: list[tuple[bytes, bytes]] = []
    cid, node, cumulative = _build_shard(items, 0, sub_blocks)
    return DirectoryNode(cid, node, cumulative, [(cid, node)] + sub_blocks)


class Directory:
    """A mutable set of entries that builds its UnixFS node (basic or HAMT) on demand.

    Adding a name that exists replaces that entry. The built node is cached until the next
    change.
    """

    def __init__(self, entries: Iterable[DirEntry] = ()) -> None:
        self._entries: dict[bytes, tuple[bytes, int]] = {}
        self._estimate = 0
        self._built: DirectoryNode | None = None
        for entry in entries:
            self.add(*entry)

    def add(self, name: str, cid: bytes, size: int) -> None:
        """Add or replace the entry `name`."""
        if not name or "/" in name:
            raise DirectoryError(f"invalid directory entry name {name!r}")
        if size < 0:
            raise DirectoryError(f"entry {name!r} has a negative size {size}")
        raw = name_bytes(name)
        old = self._entries.get(raw)
        if old is not None:
            self._estimate -= estimated_size(raw, old[0])
        self._entries[raw] = (bytes(cid), size)
        self._estimate += estimated_size(raw, cid)
        self._built = None

    def remove(self, name: str) -> bool:
        """Remove the entry `name`; False if there was none."""
        raw = name_bytes(name)
        old = self._entries.pop(raw, None)
        if old is None:
            return False
        self._estimate -= estimated_size(raw, old[0])
        self._built = None
        return True

    def get(self, name: str) -> DirEntry | None:
        """The entry `name`, or None."""
        found = self._entries.get(name_bytes(name))
        return None if found is None else DirEntry(name, found[0], found[1])

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[DirEntry]:
        """Entries in name-byte order."""
        for raw in sorted(self._entries):
            cid, size = self._entries[raw]
            yield DirEntry(name_text(raw), cid, size)

    @property
    def estimated_size(self) -> int:
        """Σ(len(name) + len(cid)) over the entries, boxo's sharding estimate."""
        return self._estimate

    @property
    def sharded(self) -> bool:
        """Whether the node is a HAMT (estimate ≥ 256 KiB)."""
        return self._estimate >= SHARD_THRESHOLD

    def build(self) -> DirectoryNode:
        """The UnixFS node(s) for the current entries."""
        if self._built is None:
            triples = ((raw, cid, size) for raw, (cid, size) in self._entries.items())
            self._built = build_hamt(triples) if self.sharded else build_basic(triples)
        return self._built


# --- reading ------------------------------------------------------------------------------

GetBlock = Callable[[bytes], bytes]


def _node_kind(node: bytes) -> tuple[list[PBLink], int]:
    links, payload = decode_node(node)
    if payload is None:
        raise DirectoryError("dag-pb node without UnixFS data")
    meta = decode_unixfs(payload)
    if meta.type == TYPE_HAMT_SHARD and (meta.fanout != HAMT_FANOUT or meta.hash_type != HAMT_HASH_MURMUR3):
        raise DirectoryError(f"unsupported HAMT (fanout {meta.fanout}, hash 0x{meta.hash_type or 0:x})")
    if meta.type not in (TYPE_DIRECTORY, TYPE_HAMT_SHARD):
        raise DirectoryError(f"UnixFS type {meta.type} is not a directory")
    return links, meta.type


class DirectoryView:
    """Read-only access to a built directory (basic or HAMT), decoding each node once.

    Args:
        node: the directory's root node bytes.
        get_block: fetches HAMT sub-shard nodes by CID (a dict's ``__getitem__`` will do).
    """

    def __init__(self, node: bytes, get_block: GetBlock) -> None:
        self._get_block = get_block
        self._links, self.kind = _node_kind(node)
        # per shard: slot prefix → link, for lookups by hash
        self._slots: dict[bytes | None, dict[bytes, PBLink]] = {}
        self._shards: dict[bytes, list[PBLink]] = {}

    def _shard_links(self, cid: bytes | None) -> list[PBLink]:
        if cid is None:
            return self._links
        if cid not in self._shards:
            try:
                data = self._get_block(cid)
            except KeyError as exc:
                raise DirectoryError(f"shard block {cid_to_str(cid)} is missing") from exc
            self._shards[cid] = _node_kind(data)[0]
        return self._shards[cid]

    def entries(self) -> list[DirEntry]:
        """Every entry, in link order (name order for basic, slot order for HAMT)."""
        if self.kind == TYPE_DIRECTORY:
            return [DirEntry(name_text(link.name), link.cid, link.tsize) for link in self._links]
        out: list[DirEntry] = []
        stack: list[bytes | None] = [None]
        while stack:
            for link in reversed(self._shard_links(stack.pop())):
                if len(link.name) == 2:
                    stack.append(link.cid)
                else:
                    out.append(DirEntry(name_text(link.name[2:]), link.cid, link.tsize))
        return out

    def lookup(self, name: str) -> DirEntry | None:
        """The entry `name`, or None; a HAMT is searched by hash, one slot per level."""
        raw = name_bytes(name)
        if self.kind == TYPE_DIRECTORY:
            for link in self._links:
                if link.name == raw:
                    return DirEntry(name, link.cid, link.tsize)
            return None
        digest = hamt_hash(raw)
        shard: bytes | None = None
        for depth in range(_HAMT_MAX_DEPTH):
            if shard not in self._slots:
                self._slots[shard] = {s.name[:2]: s for s in self._shard_links(shard)}
            slot = self._slots[shard].get(b"%02X" % digest[depth])
            if slot is None:
                return None
            if len(slot.name) == 2:
                shard = slot.cid
                continue
            return DirEntry(name, slot.cid, slot.tsize) if slot.name[2:] == raw else None
        return None


def read_entries(node: bytes, get_block: GetBlock) -> list[DirEntry]:
    """All entries of a directory node (basic or HAMT; sub-shards fetched through get_block)."""
    return DirectoryView(node, get_block).entries()


def lookup(node: bytes, get_block: GetBlock, name: str) -> DirEntry | None:
    """Find `name` in a directory node (see `DirectoryView.lookup`)."""
    return DirectoryView(node, get_block).lookup(name)
