"""pieceworks' serialized directory state, stored in ``directories.data`` (SPEC §8.3).

Singularity stores a zstd-compressed CBOR array whose map order is random. pieceworks keeps
the same information in its own compact, deterministic form; the directory node and HAMT
shards are not stored, because they are a pure function of the entries
(`dataprep.directory`) and are rebuilt on load.

Layout (all integers are unsigned LEB128 varints)::

    "PWD1"  <compression: 00 none | 01 zlib>  <body, compressed or not>

    body = entry_count  ( len(name) name  len(cid) cid  size )*      entries by name bytes
           block_count  ( len(cid) cid  len(data) data )*            additional by CID bytes

*entries* are the directory's links: a file's (name, CID, raw size) or a child directory's
(name, node CID, cumulative size). Sizes are kept in full 64 bits (Singularity cuts its
placeholder sizes to uint32; that never reaches a CID, see SPEC §10 #21).
*additional* are the parent blocks of split files attached to this directory; the set only
grows. The body is zlib-compressed (level 6) when that makes it smaller. Empty ``data``
(a directory never written) decodes to an empty state.
"""
from __future__ import annotations

import zlib
from typing import Iterable

from dataprep.cid import EMPTY_FILE_CID, decode_uvarint, encode_uvarint
from dataprep.directory import Directory, DirectoryNode, DirEntry, name_bytes, name_text
from dataprep.errors import DataprepError

MAGIC = b"PWD1"
_RAW = 0
_ZLIB = 1


class DirStateError(DataprepError):
    """A ``directories.data`` blob that pieceworks cannot read."""


class DirectoryState:
    """A directory's entries plus the extra blocks it must export (split-file parents).

    Args:
        entries: initial entries.
        additional: initial additional blocks, CID → bytes.
    """

    def __init__(self, entries: Iterable[DirEntry] = (), additional: dict[bytes, bytes] | None = None) -> None:
        self.directory = Directory(entries)
        self.additional: dict[bytes, bytes] = dict(additional or {})

    def add_file(self, name: str, cid: bytes, size: int, parent_blocks: Iterable[tuple[bytes, bytes]] = ()) -> None:
        """Add or replace a file entry; keep the parent blocks of a split file for export."""
        self.directory.add(name, cid, size)
        for block_cid, data in parent_blocks:
            self.additional[bytes(block_cid)] = bytes(data)

    def add_child(self, name: str, child: DirectoryNode) -> None:
        """Add or replace a child directory entry (its node CID and cumulative size)."""
        self.directory.add(name, child.cid, child.cumulative_size)

    def node(self) -> DirectoryNode:
        """The directory node (basic or HAMT) for the current entries."""
        return self.directory.build()

    def export_blocks(self) -> list[tuple[bytes, bytes]]:
        """Blocks for the DAG CAR, SPEC §8.4: node blocks, then additional, each sorted by CID.

        Empty blocks are skipped, except the empty-file block.
        """
        reals = sorted(self.node().blocks)
        extra = sorted(self.additional.items())
        return [(cid, data) for cid, data in reals + extra if data or cid == EMPTY_FILE_CID]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DirectoryState):
            return NotImplemented
        return list(self.directory) == list(other.directory) and self.additional == other.additional

    def to_bytes(self) -> bytes:
        """Serialize deterministically (see the module docstring for the layout)."""
        body = bytearray()
        body += encode_uvarint(len(self.directory))
        for entry in self.directory:  # already in name-byte order
            raw = name_bytes(entry.name)
            body += encode_uvarint(len(raw)) + raw
            body += encode_uvarint(len(entry.cid)) + entry.cid
            body += encode_uvarint(entry.size)
        body += encode_uvarint(len(self.additional))
        for cid, data in sorted(self.additional.items()):
            body += encode_uvarint(len(cid)) + cid
            body += encode_uvarint(len(data)) + data
        packed = zlib.compress(bytes(body), 6)
        if len(packed) < len(body):
            return MAGIC + bytes((_ZLIB,)) + packed
        return MAGIC + bytes((_RAW,)) + bytes(body)

    @classmethod
    def from_bytes(cls, blob: bytes | bytearray | memoryview | None) -> "DirectoryState":
        """Deserialize; None or empty bytes give an empty state.

        Raises:
            DirStateError: not a pieceworks directory state, or corrupt.
        """
        if not blob:
            return cls()
        blob = bytes(blob)
        if blob[:4] != MAGIC or len(blob) < 5:
            raise DirStateError("directory data is not in the pieceworks format (bad magic)")
        mode = blob[4]
        if mode == _ZLIB:
            try:
                body = zlib.decompress(blob[5:])
            except zlib.error as exc:
                raise DirStateError(f"directory data does not decompress: {exc}") from exc
        elif mode == _RAW:
            body = blob[5:]
        else:
            raise DirStateError(f"unknown directory data compression {mode}")
        try:
            return cls._parse(body)
        except DirStateError:
            raise
        except (DataprepError, IndexError, UnicodeDecodeError) as exc:
            raise DirStateError(f"corrupt directory data: {exc}") from exc

    @classmethod
    def _parse(cls, body: bytes) -> "DirectoryState":
        pos = 0

        def take() -> bytes:
            nonlocal pos
            length, pos = decode_uvarint(body, pos)
            end = pos + length
            if end > len(body):
                raise DirStateError("corrupt directory data: field runs past the end")
            chunk = body[pos:end]
            pos = end
            return chunk

        state = cls()
        count, pos = decode_uvarint(body, pos)
        for _ in range(count):
            name = name_text(take())
            cid = take()
            size, pos = decode_uvarint(body, pos)
            state.directory.add(name, cid, size)
        count, pos = decode_uvarint(body, pos)
        for _ in range(count):
            cid = take()
            state.additional[cid] = take()
        if pos != len(body):
            raise DirStateError(f"corrupt directory data: {len(body) - pos} trailing bytes")
        return state
