"""Filecoin piece commitment (commP) of a byte stream, and the piece CID that names it.

What is computed (SPEC §7.5): the input is zero-padded to a multiple of 127 bytes; each
127-byte quad is Fr32-expanded to 128 bytes (four 254-bit little-endian chunks, each stored
in 32 bytes whose top two bits are zero); the 32-byte pieces are the leaves of a binary tree
padded with zero leaves to a power of two, and each node is SHA-256(left || right) with the
top two bits of byte 31 cleared. The root is the commitment; 32 × (number of leaves) is the
padded piece size, NextPow2(128 × ceil(len / 127)). Fewer than 65 bytes is an error, as in
go-fil-commp-hashhash, which Singularity uses.

State model (both kernels): the stream is cut into units of 256 quads (32,512 bytes), each
hashed to a subtree root of level 10; roots wait on a stack of pending left nodes, one slot
per level, so memory is O(log n) whatever the length. A partial unit waits in a buffer and is
only expanded, on a copy, by `digest()`, which therefore leaves the state untouched: one may
call `digest()`, `update()` more and `digest()` again. `digest()` closes every pending left
node with the root of an all-zero subtree of its level, which is why padding a piece to a
larger size (`pad_commp`) equals appending zero bytes to the input.

Kernels: `dataprep._commp` (C, SHA-NI when the CPU has it, GIL released while hashing) is
used when it was built; otherwise the pure-Python `PythonCommP` runs (about 25 MB/s), with
one warning at import. `PIECEWORKS_COMMP=python` forces the fallback. Both give the same
bytes; the tests hold them to each other and to independent reference vectors.

A `CommP` object must not be fed from two threads at once: the native kernel raises
RuntimeError if it is; two objects in two threads hash in parallel.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import os
from typing import BinaryIO, Protocol

from loguru import logger

__all__ = [
    "CommP",
    "KERNEL",
    "MIN_INPUT",
    "NativeCommP",
    "PythonCommP",
    "compute_piece",
    "next_pow2",
    "pad_commp",
    "padded_piece",
    "piece_cid",
    "piece_cid_str",
    "zero_commitment",
]

MIN_INPUT = 65
"""Fewest input bytes commP accepts."""

_QUAD_IN = 127
_UNIT_QUADS = 256
_UNIT_IN = _QUAD_IN * _UNIT_QUADS
_UNIT_LEVEL = 10  # 256 quads = 1024 leaves = 2**10
_M254 = (1 << 254) - 1
# CIDv1, codec fil-commitment-unsealed (0xf101), multihash sha2-256-trunc254-padded (0x1012),
# digest length 32: every piece CID starts with these 7 bytes.
_CID_PREFIX = bytes([0x01, 0x81, 0xE2, 0x03, 0x92, 0x20, 0x20])
_READ_BUFFER = 4 << 20
_sha256 = hashlib.sha256


class CommPLike(Protocol):
    """What both kernels offer."""

    @property
    def total(self) -> int: ...

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def digest(self) -> tuple[bytes, int]: ...


def next_pow2(x: int) -> int:
    """Smallest power of two ≥ x; NextPow2(0) = 1, as in Singularity."""
    if x < 0:
        raise ValueError(f"next_pow2 of a negative number: {x}")
    return 1 if x <= 1 else 1 << (x - 1).bit_length()


def _node(pair: bytes) -> bytes:
    """One tree node: SHA-256 of 64 bytes with the top two bits of byte 31 cleared."""
    d = _sha256(pair).digest()
    return d[:31] + _LOW6[d[31]]


_LOW6 = [bytes([b & 0x3F]) for b in range(256)]


def _fr32(quad: bytes | memoryview) -> bytes:
    """Expand 127 bytes to 128: four 254-bit chunks, each in 32 bytes with 2 zero bits on top."""
    v = int.from_bytes(quad, "little")
    return (
        (v & _M254)
        | ((v >> 254) & _M254) << 256
        | ((v >> 508) & _M254) << 512
        | (v >> 762) << 768
    ).to_bytes(128, "little")


def _quad_node(quad: bytes | memoryview) -> bytes:
    """Level-2 subtree root over the four leaves of one quad."""
    fr = _fr32(quad)
    return _node(_node(fr[:64]) + _node(fr[64:]))


def _unit_root(unit: memoryview) -> bytes:
    """Level-10 subtree root of one whole unit (256 quads)."""
    level = [_quad_node(unit[off : off + _QUAD_IN]) for off in range(0, _UNIT_IN, _QUAD_IN)]
    while len(level) > 1:
        level = [_node(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


@functools.cache
def zero_commitment(level: int) -> bytes:
    """Root of an all-zero subtree with 2**level leaves (level 0 = one 32-byte zero leaf).

    The commitment of a zero piece of `size` padded bytes is zero_commitment(log2(size / 32)).
    """
    if level < 0 or level > 63:
        raise ValueError(f"zero_commitment level out of range: {level}")
    if level == 0:
        return bytes(32)
    below = zero_commitment(level - 1)
    return _node(below + below)


def _push(layers: list[bytes | None], node: bytes, level: int) -> None:
    """Add a complete subtree root of `level`, merging with pending left siblings."""
    while layers[level] is not None:
        node = _node(layers[level] + node)  # type: ignore[operator]
        layers[level] = None
        level += 1
    layers[level] = node


def _root(layers: list[bytes | None]) -> tuple[bytes, int]:
    """Close pending left nodes with zero subtrees; return (root, level of the root)."""
    levels = [i for i, n in enumerate(layers) if n is not None]
    low, high = levels[0], levels[-1]
    if low == high:
        return layers[high], high  # type: ignore[return-value]
    carry = _node(layers[low] + zero_commitment(low))  # type: ignore[operator]
    for lvl in range(low + 1, high + 1):
        left = layers[lvl]
        carry = _node(left + carry) if left is not None else _node(carry + zero_commitment(lvl))
    return carry, high + 1


class PythonCommP:
    """Streaming commP in pure Python: the fallback kernel (about 25 MB/s)."""

    kernel = "python"

    def __init__(self) -> None:
        self.total = 0
        self._pending = bytearray()
        self._layers: list[bytes | None] = [None] * 64

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        """Feed bytes; whole units are hashed straight from `data` without a copy."""
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        self.total += len(mv)
        if self._pending:
            take = min(len(mv), _UNIT_IN - len(self._pending))
            self._pending += mv[:take]
            mv = mv[take:]
            if len(self._pending) < _UNIT_IN:
                return
            full, self._pending = self._pending, bytearray()
            _push(self._layers, _unit_root(memoryview(full)), _UNIT_LEVEL)
        whole = len(mv) - len(mv) % _UNIT_IN
        for off in range(0, whole, _UNIT_IN):
            _push(self._layers, _unit_root(mv[off : off + _UNIT_IN]), _UNIT_LEVEL)
        self._pending = bytearray(mv[whole:])

    def digest(self) -> tuple[bytes, int]:
        """Return (32-byte commitment, padded piece size); the state is kept.

        Raises:
            ValueError: fewer than 65 bytes were fed.
        """
        if self.total < MIN_INPUT:
            raise ValueError(f"commP needs at least {MIN_INPUT} bytes of input, got {self.total}")
        layers = list(self._layers)
        tail = bytes(self._pending)
        if tail:
            tail += bytes(-len(tail) % _QUAD_IN)
            # The tail starts on a unit boundary, so every quad is an aligned level-2 subtree.
            for off in range(0, len(tail), _QUAD_IN):
                _push(layers, _quad_node(tail[off : off + _QUAD_IN]), 2)
        root, level = _root(layers)
        size = next_pow2(-(-self.total // _QUAD_IN) * 128)
        if size != 32 << level:
            raise AssertionError("commP tree height does not match the piece size")
        return root, size


NativeCommP: type | None
try:
    if os.environ.get("PIECEWORKS_COMMP", "").lower() == "python":
        raise ImportError("PIECEWORKS_COMMP=python")
    from dataprep._commp import CommP as NativeCommP  # type: ignore[no-redef]
except ImportError as _exc:
    NativeCommP = None
    logger.warning("native commP kernel not used ({}); falling back to pure Python (~25 MB/s)", _exc)

CommP: type = NativeCommP if NativeCommP is not None else PythonCommP
"""The streaming commP class of the chosen kernel: `update(data)`, `digest()`, `total`."""

KERNEL = "native" if NativeCommP is not None else "python"
"""Which kernel `CommP` is: "native" or "python"."""


def pad_commp(commitment: bytes, from_size: int, to_size: int) -> bytes:
    """Extend a commitment of a `from_size` piece to a `to_size` piece (PadCommP).

    Equal to appending zero bytes to the input: each level up pairs the node with the root
    of an all-zero subtree of the same size.

    Args:
        commitment: 32-byte commitment of the smaller piece.
        from_size: its padded piece size, a power of two ≥ 32.
        to_size: the wanted padded piece size, a power of two ≥ from_size.
    """
    if len(commitment) != 32:
        raise ValueError(f"commitment must be 32 bytes, got {len(commitment)}")
    for name, size in (("from_size", from_size), ("to_size", to_size)):
        if size < 32 or size & (size - 1):
            raise ValueError(f"{name} must be a power of two ≥ 32, got {size}")
    if to_size < from_size:
        raise ValueError(f"cannot pad a {from_size}-byte piece down to {to_size}")
    node = bytes(commitment)
    for level in range(from_size.bit_length() - 6, to_size.bit_length() - 6):
        node = _node(node + zero_commitment(level))
    return node


def padded_piece(commitment: bytes, size: int, min_piece_size: int) -> tuple[bytes, int]:
    """Apply a minimum piece size: (commitment, size) of max(size, min_piece_size).

    Raises:
        ValueError: min_piece_size is larger than the piece and not a power of two.
    """
    if min_piece_size <= size:
        return bytes(commitment), size
    if min_piece_size & (min_piece_size - 1):
        raise ValueError(f"min_piece_size must be a power of two, got {min_piece_size}")
    return pad_commp(commitment, size, min_piece_size), min_piece_size


def piece_cid(commitment: bytes) -> bytes:
    """CIDv1 bytes (fil-commitment-unsealed, sha2-256-trunc254-padded) of a commitment."""
    if len(commitment) != 32:
        raise ValueError(f"commitment must be 32 bytes, got {len(commitment)}")
    return _CID_PREFIX + bytes(commitment)


def piece_cid_str(commitment_or_cid: bytes) -> str:
    """The piece CID as text (multibase base32 lower, "baga6ea4seaq…").

    Args:
        commitment_or_cid: a 32-byte commitment or the 39 bytes `piece_cid` returns.
    """
    raw = bytes(commitment_or_cid)
    if len(raw) == 32:
        raw = piece_cid(raw)
    elif len(raw) != 39 or not raw.startswith(_CID_PREFIX):
        raise ValueError("expected a 32-byte commitment or a 39-byte piece CID")
    return "b" + base64.b32encode(raw).decode("ascii").lower().rstrip("=")


def compute_piece(
    source: bytes | bytearray | memoryview | BinaryIO, min_piece_size: int
) -> tuple[bytes, int]:
    """commP of a whole payload, padded to `min_piece_size`.

    Args:
        source: the bytes, or a binary file object read to EOF with `readinto`.
        min_piece_size: minimum padded piece size (a power of two if it is used).

    Returns:
        (piece CID bytes, padded piece size = max(natural size, min_piece_size)).
    """
    cp = CommP()
    if isinstance(source, (bytes, bytearray, memoryview)):
        cp.update(source)
    else:
        buf = bytearray(_READ_BUFFER)
        view = memoryview(buf)
        while n := source.readinto(view):  # type: ignore[attr-defined]
            # Both kernels copy what they keep, so the buffer can be reused at once.
            cp.update(view[:n])
    commitment, size = padded_piece(*cp.digest(), min_piece_size)
    return piece_cid(commitment), size
