"""Walk UnixFS DAGs held in a block map: rebuild file bytes, list directories, resolve paths.

For tests and end-to-end checks (a CAR read back with `dataprep.car.read_car` gives the
block map). Blocks are looked up through a ``get_block(cid) -> bytes`` callable, so a dict's
``__getitem__`` works as well as a database lookup. Each dag-pb block's CID is checked
against its bytes, and File nodes are checked against their blocksizes.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Iterator

from dataprep.cid import CODEC_DAG_PB, CODEC_RAW, cid_codec, cid_digest, cid_to_str
from dataprep.errors import DataprepError
from dataprep.unixfs import (
    TYPE_DIRECTORY,
    TYPE_FILE,
    TYPE_HAMT_SHARD,
    TYPE_RAW,
    decode_node,
    decode_unixfs,
)

GetBlock = Callable[[bytes], bytes]


class DagWalkError(DataprepError):
    """The DAG is inconsistent or a block is missing."""


def _fetch(get_block: GetBlock, cid: bytes) -> bytes:
    try:
        data = get_block(cid)
    except KeyError as exc:
        raise DagWalkError(f"block {cid_to_str(cid)} is missing") from exc
    if cid_digest(cid) != hashlib.sha256(data).digest():
        raise DagWalkError(f"block {cid_to_str(cid)} does not match its CID")
    return data


def iter_file(get_block: GetBlock, cid: bytes) -> Iterator[bytes]:
    """Yield the content of the UnixFS file rooted at `cid`, piece by piece, in order.

    Raises:
        DagWalkError: a missing or corrupt block, a non-file node, or sizes that disagree.
    """
    data = _fetch(get_block, cid)
    codec = cid_codec(cid)
    if codec == CODEC_RAW:
        yield data
        return
    if codec != CODEC_DAG_PB:
        raise DagWalkError(f"unexpected codec 0x{codec:x} in file DAG")
    links, payload = decode_node(data)
    if payload is None:
        raise DagWalkError(f"dag-pb node {cid_to_str(cid)} has no UnixFS data")
    meta = decode_unixfs(payload)
    if meta.type not in (TYPE_FILE, TYPE_RAW):
        raise DagWalkError(f"node {cid_to_str(cid)} is UnixFS type {meta.type}, not a file")
    if meta.data:
        yield meta.data
    if meta.blocksizes and len(meta.blocksizes) != len(links):
        raise DagWalkError(f"node {cid_to_str(cid)}: {len(links)} links, {len(meta.blocksizes)} blocksizes")
    for index, link in enumerate(links):
        produced = 0
        for piece in iter_file(get_block, link.cid):
            produced += len(piece)
            yield piece
        if meta.blocksizes and produced != meta.blocksizes[index]:
            raise DagWalkError(
                f"child {index} of {cid_to_str(cid)} holds {produced} bytes, blocksize says {meta.blocksizes[index]}"
            )


def read_file(get_block: GetBlock, cid: bytes) -> bytes:
    """The whole content of the UnixFS file rooted at `cid`."""
    return b"".join(iter_file(get_block, cid))


def list_directory(get_block: GetBlock, cid: bytes) -> dict[str, tuple[bytes, int]]:
    """Entries of a UnixFS directory (basic or HAMT): name → (CID, Tsize)."""
    links, payload = decode_node(_fetch(get_block, cid))
    meta = decode_unixfs(payload or b"")
    if meta.type == TYPE_DIRECTORY:
        return {link.name.decode("utf-8", "surrogateescape"): (link.cid, link.tsize) for link in links}
    if meta.type != TYPE_HAMT_SHARD:
        raise DagWalkError(f"node {cid_to_str(cid)} is UnixFS type {meta.type}, not a directory")
    entries: dict[str, tuple[bytes, int]] = {}
    for link in links:
        if len(link.name) == 2:  # a sub-shard: its name is the 2-hex-digit index only
            entries.update(list_directory(get_block, link.cid))
        else:
            entries[link.name[2:].decode("utf-8", "surrogateescape")] = (link.cid, link.tsize)
    return entries


def resolve_path(get_block: GetBlock, root: bytes, path: str) -> bytes:
    """The CID at a slash-separated path under the directory `root`.

    Raises:
        DagWalkError: a component is missing.
    """
    cid = root
    for part in [p for p in path.split("/") if p]:
        entries = list_directory(get_block, cid)
        if part not in entries:
            raise DagWalkError(f"{path!r}: no entry {part!r}")
        cid = entries[part][0]
    return cid
