"""dag-pb and UnixFS encoding, and the balanced file DAG of 1024 links per node.

dag-pb node (protobuf, fields written Links first, then Data, as dag-pb requires)::

    PBNode  = ( 12 <len> PBLink )*  [ 0a <len> Data ]
    PBLink  = 0a <len> Hash  12 <len> Name  18 <varint Tsize>

Name is always written, even when empty (``12 00``); Tsize is always written.

UnixFS Data (the PBNode Data payload), fields in number order::

    08 <Type>  [12 <len> Data]  [18 <filesize>]  (20 <blocksize>)*  [28 <hashType>]  [30 <fanout>]

Types: Raw 0, Directory 1, File 2, Metadata 3, Symlink 4, HAMTShard 5.

File parent nodes (SPEC §7.3): Type File, filesize = Σ child sizes, one unpacked blocksize
per child, no Data field. Link Tsize and blocksizes are the **raw content bytes** under the
child, also for upper levels (not the usual cumulative DAG size). A node's own cumulative
size, used only when it becomes a directory entry, is len(node) + Σ link Tsize.

Tree shape: links in groups of 1024 make the parents of one level, level after level until
one node is left; nodes come out in creation order (level by level, root last).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable, Iterator, NamedTuple, Sequence

from dataprep.cid import DAG_PB_PREFIX, EMPTY_FILE_CID, RAW_PREFIX, decode_uvarint, encode_uvarint
from dataprep.errors import DataprepError

CHUNK_SIZE = 1 << 20
LINKS_PER_NODE = 1024

TYPE_RAW = 0
TYPE_DIRECTORY = 1
TYPE_FILE = 2
TYPE_METADATA = 3
TYPE_SYMLINK = 4
TYPE_HAMT_SHARD = 5

_uvarint = encode_uvarint


class DagPbError(DataprepError):
    """Bytes that are not a valid dag-pb node or UnixFS payload."""


class PBLink(NamedTuple):
    """One dag-pb link: child CID bytes, name (bytes) and Tsize."""

    cid: bytes
    name: bytes
    tsize: int


class FileDag(NamedTuple):
    """A file (or range) root: its CID, its raw byte size and the parent blocks built."""

    root_cid: bytes
    size: int
    blocks: list[tuple[bytes, bytes]]


# --- dag-pb -------------------------------------------------------------------------------


def encode_link(cid: bytes, name: bytes, tsize: int) -> bytes:
    """One PBLink, framed as field 2 of PBNode (``12 <len> ...``)."""
    body = b"\x0a" + _uvarint(len(cid)) + cid + b"\x12" + _uvarint(len(name)) + name + b"\x18" + _uvarint(tsize)
    return b"\x12" + _uvarint(len(body)) + body


def encode_node(links: Iterable[PBLink | tuple[bytes, bytes, int]], data: bytes | None) -> bytes:
    """Encode a PBNode from links (in the order given) and an optional Data payload."""
    parts = [encode_link(cid, name, tsize) for cid, name, tsize in links]
    if data is not None:
        parts.append(b"\x0a" + _uvarint(len(data)) + data)
    return b"".join(parts)


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) for a protobuf message (varint and bytes only)."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = decode_uvarint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = decode_uvarint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = decode_uvarint(buf, pos)
            if pos + length > end:
                raise DagPbError("truncated protobuf field")
            yield number, wire, buf[pos : pos + length]
            pos += length
        else:
            raise DagPbError(f"unsupported protobuf wire type {wire}")


def decode_node(buf: bytes) -> tuple[list[PBLink], bytes | None]:
    """Decode a PBNode into (links, data or None)."""
    links: list[PBLink] = []
    data: bytes | None = None
    for number, wire, value in _fields(bytes(buf)):
        if number == 2 and wire == 2:
            cid = b""
            name = b""
            tsize = 0
            for lnum, lwire, lval in _fields(value):  # type: ignore[arg-type]
                if lnum == 1 and lwire == 2:
                    cid = lval  # type: ignore[assignment]
                elif lnum == 2 and lwire == 2:
                    name = lval  # type: ignore[assignment]
                elif lnum == 3 and lwire == 0:
                    tsize = lval  # type: ignore[assignment]
                else:
                    raise DagPbError(f"unexpected PBLink field {lnum}")
            links.append(PBLink(cid, name, tsize))
        elif number == 1 and wire == 2:
            data = value  # type: ignore[assignment]
        else:
            raise DagPbError(f"unexpected PBNode field {number}")
    return links, data


# --- UnixFS Data --------------------------------------------------------------------------


@dataclass
class UnixFSData:
    """The decoded UnixFS payload of a dag-pb node."""

    type: int
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = field(default_factory=list)
    hash_type: int | None = None
    fanout: int | None = None


def encode_unixfs(
    type_: int,
    *,
    data: bytes | None = None,
    filesize: int | None = None,
    blocksizes: Sequence[int] = (),
    hash_type: int | None = None,
    fanout: int | None = None,
) -> bytes:
    """Encode a UnixFS Data message, fields in number order, blocksizes unpacked."""
    out = bytearray(b"\x08" + _uvarint(type_))
    if data is not None:
        out += b"\x12" + _uvarint(len(data)) + data
    if filesize is not None:
        out += b"\x18" + _uvarint(filesize)
    for size in blocksizes:
        out += b"\x20" + _uvarint(size)
    if hash_type is not None:
        out += b"\x28" + _uvarint(hash_type)
    if fanout is not None:
        out += b"\x30" + _uvarint(fanout)
    return bytes(out)


def decode_unixfs(buf: bytes) -> UnixFSData:
    """Decode a UnixFS Data message (blocksizes packed or unpacked)."""
    result = UnixFSData(type=-1)
    for number, wire, value in _fields(bytes(buf)):
        if number == 1 and wire == 0:
            result.type = value  # type: ignore[assignment]
        elif number == 2 and wire == 2:
            result.data = value  # type: ignore[assignment]
        elif number == 3 and wire == 0:
            result.filesize = value  # type: ignore[assignment]
        elif number == 4 and wire == 0:
            result.blocksizes.append(value)  # type: ignore[arg-type]
        elif number == 4 and wire == 2:
            pos = 0
            while pos < len(value):  # type: ignore[arg-type]
                size, pos = decode_uvarint(value, pos)  # type: ignore[arg-type]
                result.blocksizes.append(size)
        elif number == 5 and wire == 0:
            result.hash_type = value  # type: ignore[assignment]
        elif number == 6 and wire == 0:
            result.fanout = value  # type: ignore[assignment]
        # mode (7) and mtime (8) carry nothing pieceworks uses.
    if result.type < 0:
        raise DagPbError("UnixFS data without a Type")
    return result


# --- file DAG -----------------------------------------------------------------------------


def encode_file_node(links: Sequence[tuple[bytes, int]]) -> bytes:
    """Encode a File parent node over (child CID, raw byte size) links."""
    sizes = [size for _, size in links]
    data = encode_unixfs(TYPE_FILE, filesize=sum(sizes), blocksizes=sizes)
    return b"".join(encode_link(cid, b"", size) for cid, size in links) + b"\x0a" + _uvarint(len(data)) + data


def cumulative_size(node: bytes) -> int:
    """len(node) + Σ link Tsize: a node's size when it becomes a directory entry."""
    links, _ = decode_node(node)
    return len(node) + sum(link.tsize for link in links)


def build_file_dag(links: Sequence[tuple[bytes, int]]) -> FileDag:
    """Build the balanced tree over ≥2 links, 1024 per node, level by level.

    Args:
        links: (child CID, raw byte size) in file order.

    Returns:
        The root CID, the total raw size, and every new parent block in creation order
        (root last).
    """
    if len(links) <= 1:
        raise ValueError("links must be more than 1")
    level: list[tuple[bytes, int]] = list(links)
    blocks: list[tuple[bytes, bytes]] = []
    while len(level) > 1:
        upper: list[tuple[bytes, int]] = []
        for start in range(0, len(level), LINKS_PER_NODE):
            group = level[start : start + LINKS_PER_NODE]
            node = encode_file_node(group)
            cid = DAG_PB_PREFIX + hashlib.sha256(node).digest()
            blocks.append((cid, node))
            upper.append((cid, sum(size for _, size in group)))
        level = upper
    return FileDag(level[0][0], level[0][1], blocks)


def assemble_file(links: Sequence[tuple[bytes, int]]) -> FileDag:
    """A split file's root from its range links (range CID, range length); ≥2 links.

    Returns:
        ``(root_cid, size, new_blocks)``.

    Raises:
        ValueError: fewer than 2 links ("links must be more than 1").
    """
    return build_file_dag(links)


def range_root(links: Sequence[tuple[bytes, int]]) -> FileDag:
    """The root of one range: the empty-file CID, its single leaf, or a built tree."""
    if not links:
        return FileDag(EMPTY_FILE_CID, 0, [])
    if len(links) == 1:
        return FileDag(links[0][0], links[0][1], [])
    return build_file_dag(links)


def iter_chunks(fobj: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Read a binary stream in full chunks (the last may be short); nothing for an empty one."""
    while True:
        chunk = fobj.read(chunk_size)
        if not chunk:
            return
        while len(chunk) < chunk_size:
            more = fobj.read(chunk_size - len(chunk))
            if not more:
                break
            chunk += more
        yield chunk
        if len(chunk) < chunk_size:
            return


def leaf(chunk: bytes | bytearray | memoryview) -> tuple[bytes, int]:
    """(raw leaf CID, size) of one chunk."""
    return RAW_PREFIX + hashlib.sha256(chunk).digest(), len(chunk)


def file_dag_from_chunks(chunks: Iterable[bytes]) -> tuple[FileDag, list[tuple[bytes, bytes]]]:
    """Whole-file DAG from its chunks: (root, leaf blocks in order). For tests and tools.

    An empty input gives the empty-file block as its only leaf, as pack does.
    """
    leaves = [(RAW_PREFIX + hashlib.sha256(c).digest(), bytes(c)) for c in chunks]
    if not leaves:
        leaves = [(EMPTY_FILE_CID, b"")]
    root = range_root([(cid, len(data)) for cid, data in leaves])
    return root, leaves
