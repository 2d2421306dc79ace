"""CIDs as bytes: unsigned varints, CIDv1 construction, and string forms for display.

Byte layout of the CIDs pieceworks makes (all CIDv1 with a sha2-256 multihash)::

    01 55 12 20 <32-byte sha256>   raw leaf        (version 1, codec raw 0x55)
    01 70 12 20 <32-byte sha256>   dag-pb node     (version 1, codec dag-pb 0x70)

Each field is an unsigned LEB128 varint (`encode_uvarint`); these four happen to fit one
byte each, so the prefixes are constants and a CID costs one `hashlib.sha256` call plus a
concatenation. That is the hot path for 1 MiB leaves, so no general CID library is used.

Strings: CIDv1 displays as multibase base32 (prefix ``b``, RFC 4648 lower case, no
padding), e.g. ``bafkrei...``. `cid_from_str` also accepts base58btc (``z...``) and CIDv0
(``Qm...``, a bare sha2-256 multihash), and `cid_to_str` shows CIDv0 bytes as ``Qm...``.
"""
from __future__ import annotations

import base64
import hashlib

from dataprep.errors import DataprepError

CODEC_RAW = 0x55
CODEC_DAG_PB = 0x70
MH_SHA2_256 = 0x12

RAW_PREFIX = b"\x01\x55\x12\x20"
DAG_PB_PREFIX = b"\x01\x70\x12\x20"

_B58_ALPHABET = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class InvalidCid(DataprepError, ValueError):
    """Bytes or text that are not a valid CID."""


def encode_uvarint(value: int) -> bytes:
    """Encode a non-negative integer as an unsigned LEB128 varint.

    Args:
        value: the integer, ``0 <= value < 2**64``.

    Returns:
        The varint bytes (7 bits per byte, least significant group first).
    """
    if value < 0x80:
        if value < 0:
            raise ValueError(f"uvarint cannot encode a negative number: {value}")
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int]:
    """Decode an unsigned varint.

    Args:
        buf: the bytes.
        offset: where the varint starts.

    Returns:
        ``(value, offset just past the varint)``.

    Raises:
        InvalidCid: the varint is truncated or longer than 9 bytes (64 bits).
    """
    value = 0
    shift = 0
    pos = offset
    end = len(buf)
    while True:
        if pos >= end:
            raise InvalidCid(f"truncated varint at offset {offset}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise InvalidCid(f"varint longer than 64 bits at offset {offset}")


def raw_cid(data: bytes | bytearray | memoryview) -> bytes:
    """The CIDv1 (codec raw, sha2-256) of a block, as 36 bytes."""
    return RAW_PREFIX + hashlib.sha256(data).digest()


def dag_pb_cid(data: bytes | bytearray | memoryview) -> bytes:
    """The CIDv1 (codec dag-pb, sha2-256) of an encoded dag-pb node, as 36 bytes."""
    return DAG_PB_PREFIX + hashlib.sha256(data).digest()


EMPTY_FILE_CID = raw_cid(b"")
"""CID of the empty raw block: ``bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku``."""


def read_cid(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[bytes, int]:
    """Read one binary CID from a buffer (as in a CAR block or a dag-pb link).

    Args:
        buf: the bytes.
        offset: where the CID starts.

    Returns:
        ``(cid bytes, offset just past the CID)``.

    Raises:
        InvalidCid: the bytes are not a CIDv0 or CIDv1.
    """
    if len(buf) - offset >= 34 and buf[offset] == 0x12 and buf[offset + 1] == 0x20:
        end = offset + 34  # CIDv0: a bare sha2-256 multihash
        return bytes(buf[offset:end]), end
    version, pos = decode_uvarint(buf, offset)
    if version != 1:
        raise InvalidCid(f"unsupported CID version {version} at offset {offset}")
    _codec, pos = decode_uvarint(buf, pos)
    _mh_code, pos = decode_uvarint(buf, pos)
    digest_len, pos = decode_uvarint(buf, pos)
    end = pos + digest_len
    if end > len(buf):
        raise InvalidCid(f"truncated CID digest at offset {offset}")
    return bytes(buf[offset:end]), end


def validate_cid(cid: bytes) -> bytes:
    """Return `cid` if it is exactly one well-formed binary CID, else raise `InvalidCid`."""
    _, end = read_cid(cid, 0)
    if end != len(cid):
        raise InvalidCid(f"{len(cid) - end} trailing bytes after the CID")
    return cid


def cid_codec(cid: bytes) -> int:
    """The multicodec of a binary CID (dag-pb for CIDv0)."""
    if len(cid) == 34 and cid[0] == 0x12:
        return CODEC_DAG_PB
    _version, pos = decode_uvarint(cid, 0)
    codec, _ = decode_uvarint(cid, pos)
    return codec


def cid_digest(cid: bytes) -> bytes:
    """The multihash digest of a binary CID."""
    if len(cid) == 34 and cid[0] == 0x12:
        return cid[2:]
    _version, pos = decode_uvarint(cid, 0)
    _codec, pos = decode_uvarint(cid, pos)
    _code, pos = decode_uvarint(cid, pos)
    length, pos = decode_uvarint(cid, pos)
    return cid[pos : pos + length]


def _b58encode(data: bytes) -> str:
    num = int.from_bytes(data, "big")
    out = bytearray()
    while num:
        num, rem = divmod(num, 58)
        out.append(_B58_ALPHABET[rem])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return (b"1" * zeros + bytes(reversed(out))).decode("ascii")


def _b58decode(text: str) -> bytes:
    num = 0
    for ch in text.encode("ascii"):
        idx = _B58_ALPHABET.find(ch)
        if idx < 0:
            raise InvalidCid(f"invalid base58 character {chr(ch)!r}")
        num = num * 58 + idx
    zeros = len(text) - len(text.lstrip("1"))
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    return b"\0" * zeros + body


def cid_to_str(cid: bytes) -> str:
    """Display form of a binary CID: base32 ``b...`` for CIDv1, base58 ``Qm...`` for CIDv0."""
    if len(cid) == 34 and cid[0] == 0x12 and cid[1] == 0x20:
        return _b58encode(cid)
    return "b" + base64.b32encode(cid).decode("ascii").rstrip("=").lower()


def cid_from_str(text: str) -> bytes:
    """Parse a CID string (base32 ``b...``, base58btc ``z...`` or CIDv0 ``Qm...``) to bytes.

    Raises:
        InvalidCid: the text is not a CID in one of those forms.
    """
    if not text:
        raise InvalidCid("empty CID string")
    try:
        if len(text) == 46 and text.startswith("Qm"):
            cid = _b58decode(text)
        elif text[0] == "b":
            body = text[1:].upper()
            cid = base64.b32decode(body + "=" * (-len(body) % 8))
        elif text[0] == "z":
            cid = _b58decode(text[1:])
        else:
            raise InvalidCid(f"unsupported multibase prefix {text[0]!r} in {text!r}")
    except (ValueError, UnicodeEncodeError) as exc:
        if isinstance(exc, InvalidCid):
            raise
        raise InvalidCid(f"cannot decode CID {text!r}: {exc}") from exc
    return validate_cid(cid)
