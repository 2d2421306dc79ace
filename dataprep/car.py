"""CAR v1 framing: header, blocks, a streaming writer and a reader.

Byte layout (SPEC §7.2)::

    uvarint(len(H)) H                       header
    uvarint(len(cid) + len(data)) cid data  each block, back to back

H is the DAG-CBOR map ``{"roots": [root], "version": 1}`` with the keys in that order::

    a2 65 "roots" 81 d8 2a 58 25 00 <36 CID bytes> 67 "version" 01

The root is CBOR tag 42 over a byte string holding a 0x00 prefix and the binary CID. For a
36-byte CID, H is 58 bytes and the header 59 bytes, starting ``3a``. No index, no CARv2.

A block record (`BlockRecord`) notes where each block landed: ``car_offset`` is the offset
of its varint in the CAR, ``block_length`` = len(varint) + len(cid) + len(data), and
``varint`` the length prefix bytes, as the car_blocks rows need (SPEC §7.4).
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import BinaryIO, Iterator, NamedTuple

from dataprep.cid import decode_uvarint, encode_uvarint, read_cid
from dataprep.errors import DataprepError


class CarFormatError(DataprepError):
    """The bytes are not a CAR v1 stream this reader understands."""


class BlockRecord(NamedTuple):
    """Where one block was written in a CAR."""

    cid: bytes
    car_offset: int
    block_length: int
    varint: bytes


class CarBlock(NamedTuple):
    """One block read back from a CAR."""

    cid: bytes
    data: bytes
    car_offset: int
    block_length: int


def _cbor_head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes((major << 5 | value,))
    if value < 0x100:
        return bytes((major << 5 | 24, value))
    if value < 0x10000:
        return bytes((major << 5 | 25,)) + value.to_bytes(2, "big")
    if value < 0x100000000:
        return bytes((major << 5 | 26,)) + value.to_bytes(4, "big")
    return bytes((major << 5 | 27,)) + value.to_bytes(8, "big")


def car_header(root: bytes) -> bytes:
    """The complete CAR v1 header (length prefix included) for one root CID."""
    link = b"\x00" + root
    body = (
        b"\xa2\x65roots\x81\xd8\x2a"
        + _cbor_head(2, len(link))
        + link
        + b"\x67version\x01"
    )
    return encode_uvarint(len(body)) + body


def block_varint(cid: bytes, data_length: int) -> bytes:
    """The length prefix of a block: uvarint(len(cid) + len(data))."""
    return encode_uvarint(len(cid) + data_length)


def encode_block(cid: bytes, data: bytes) -> bytes:
    """One block in CAR form: varint, CID, data."""
    return block_varint(cid, len(data)) + cid + data


class CarWriter:
    """Write a CAR v1 stream to a binary file-like object, tracking offsets.

    The header is written lazily, just before the first block. When no root is given, the
    root is the CID of the first block (the pack rule, SPEC §7.2); if no block is ever
    written, nothing is written at all. Only ``fobj.write`` is used, so the target can be
    a tee that also feeds commP.

    Args:
        fobj: where the bytes go.
        root: the header root, or None for "the first block's CID".
    """

    def __init__(self, fobj: BinaryIO, root: bytes | None = None) -> None:
        self._fobj = fobj
        self._root = root
        self._offset = 0
        self._blocks = 0

    @property
    def offset(self) -> int:
        """Bytes written so far (the CAR length once done)."""
        return self._offset

    @property
    def block_count(self) -> int:
        """Blocks written so far."""
        return self._blocks

    @property
    def root(self) -> bytes | None:
        """The header root: the one given, or the first block's CID once written."""
        return self._root

    def write_header(self) -> None:
        """Write the header now (needs a root). Done automatically before the first block."""
        if self._offset:
            return
        if self._root is None:
            raise CarFormatError("the CAR root is not known yet")
        header = car_header(self._root)
        self._fobj.write(header)
        self._offset = len(header)

    def write_block(self, cid: bytes, data: bytes | bytearray | memoryview) -> BlockRecord:
        """Append one block.

        Args:
            cid: the block's binary CID.
            data: the block's bytes (not copied; written as given).

        Returns:
            Where the block landed.
        """
        if not self._offset:
            if self._root is None:
                self._root = cid
            self.write_header()
        prefix = encode_uvarint(len(cid) + len(data))
        self._fobj.write(prefix + cid)
        if len(data):
            self._fobj.write(data)
        record = BlockRecord(cid, self._offset, len(prefix) + len(cid) + len(data), prefix)
        self._offset += record.block_length
        self._blocks += 1
        return record


# --- reading -------------------------------------------------------------------------


def _cbor_decode(buf: bytes, pos: int) -> tuple[object, int]:
    """Decode one item of the small DAG-CBOR subset a CAR header uses."""
    if pos >= len(buf):
        raise CarFormatError("truncated CBOR in CAR header")
    initial = buf[pos]
    major, info = initial >> 5, initial & 0x1F
    pos += 1
    if info < 24:
        value = info
    elif info <= 27:
        width = 1 << (info - 24)
        value = int.from_bytes(buf[pos : pos + width], "big")
        pos += width
    else:
        raise CarFormatError(f"unsupported CBOR item 0x{initial:02x} in CAR header")
    if major == 0:
        return value, pos
    if major in (2, 3):
        chunk = buf[pos : pos + value]
        pos += value
        return (bytes(chunk) if major == 2 else chunk.decode("utf-8")), pos
    if major == 4:
        items = []
        for _ in range(value):
            item, pos = _cbor_decode(buf, pos)
            items.append(item)
        return items, pos
    if major == 5:
        mapping: dict[object, object] = {}
        for _ in range(value):
            key, pos = _cbor_decode(buf, pos)
            mapping[key], pos = _cbor_decode(buf, pos)
        return mapping, pos
    if major == 6 and value == 42:
        link, pos = _cbor_decode(buf, pos)
        if not isinstance(link, bytes) or not link.startswith(b"\x00"):
            raise CarFormatError("bad CID link in CAR header")
        return CidLink(link[1:]), pos
    raise CarFormatError(f"unsupported CBOR item 0x{initial:02x} in CAR header")


@dataclass(frozen=True)
class CidLink:
    """A CBOR tag-42 link in a CAR header."""

    cid: bytes


def parse_car_header(buf: bytes) -> tuple[list[bytes], int]:
    """Parse a CAR v1 header at the start of `buf`.

    Returns:
        ``(roots, offset of the first block)``.

    Raises:
        CarFormatError: not a CAR v1 header.
    """
    length, pos = decode_uvarint(buf, 0)
    end = pos + length
    if end > len(buf):
        raise CarFormatError("truncated CAR header")
    header, used = _cbor_decode(buf[pos:end], 0)
    if used != length or not isinstance(header, dict) or header.get("version") != 1:
        raise CarFormatError("not a CAR v1 header")
    roots = header.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, CidLink) for r in roots):
        raise CarFormatError("CAR header has no valid roots")
    return [r.cid for r in roots], end


def _load(src: str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO) -> bytes:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src)
    if isinstance(src, (str, os.PathLike)):
        with open(src, "rb") as fobj:
            return fobj.read()
    if isinstance(src, io.IOBase) or hasattr(src, "read"):
        return src.read()
    raise TypeError(f"cannot read a CAR from {type(src).__name__}")


def read_car_roots(src: str | os.PathLike[str] | bytes | BinaryIO) -> list[bytes]:
    """The header roots of a CAR given as a path, bytes or a binary file object."""
    roots, _ = parse_car_header(_load(src))
    return roots


def read_car(src: str | os.PathLike[str] | bytes | BinaryIO) -> Iterator[CarBlock]:
    """Iterate over the blocks of a CAR v1 (path, bytes or binary file object).

    The whole CAR is read into memory; this is meant for tests and checks, not for pieces
    of many GiB.

    Raises:
        CarFormatError: the header or a block frame is malformed or truncated.
    """
    buf = _load(src)
    _roots, pos = parse_car_header(buf)
    view = memoryview(buf)
    while pos < len(buf):
        start = pos
        length, pos = decode_uvarint(buf, pos)
        end = pos + length
        if end > len(buf) or length == 0:
            raise CarFormatError(f"truncated or empty block at offset {start}")
        cid, data_start = read_cid(view[:end], pos)
        yield CarBlock(cid, bytes(view[data_start:end]), start, end - start)
        pos = end
