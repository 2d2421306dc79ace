"""Access to the reference vectors.

The vectors come from ``../shared/vectors`` (beside the repository), computed with
independent implementations. A copy lives in ``tests/data/vectors.json`` so that the suite
runs from a plain clone; `test_vectors_copy.py` checks the copy against the original
whenever the original is beside the repository.

`vectors()` loads ``vectors.json``. Inputs are not stored: `stream(seed, size)` regenerates
them bit-exactly with the algorithm documented in ``gen.py``::

    block k = SHAKE256(utf8(seed + "/" + str(k))), 1048576 output bytes
    stream  = block0 || block1 || ...  truncated to size

Expected values always come from ``vectors.json`` (independent implementations), never from
pieceworks code.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import pytest

from dataprep.car import CarWriter
from dataprep.cid import EMPTY_FILE_CID
from dataprep.unixfs import leaf, range_root

SHARED_VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "vectors.json"
VECTORS_COPY = Path(__file__).resolve().parent / "data" / "vectors.json"
GEN_CHUNK = 1 << 20


@lru_cache(maxsize=1)
def vectors() -> dict[str, Any]:
    """The parsed ``vectors.json``; skips nothing: a missing file is a test error."""
    path = Path(os.environ.get("VECTORS", VECTORS_COPY))
    if not path.exists():
        pytest.fail(f"reference vectors not found at {path}")
    with open(path, encoding="utf-8") as fobj:
        return json.load(fobj)


def stream(seed: str, size: int) -> Iterator[bytes]:
    """The input named by `seed`, `size` bytes long, in 1 MiB blocks (last one short)."""
    for k in range((size + GEN_CHUNK - 1) // GEN_CHUNK):
        block = hashlib.shake_256(f"{seed}/{k}".encode("utf-8")).digest(GEN_CHUNK)
        yield block[: min(GEN_CHUNK, size - k * GEN_CHUNK)]


def content(seed: str, size: int) -> bytes:
    """The whole input in memory (for small inputs)."""
    return b"".join(stream(seed, size))


def file_vector(name: str) -> dict[str, Any]:
    """The entry of ``files`` with this name (e.g. ``size-1048577``)."""
    for item in vectors()["files"]:
        if item["name"] == name:
            return item
    raise KeyError(name)


def car_vector(source_name: str) -> dict[str, Any]:
    """The entry of ``cars`` built from the input file with this name (e.g. ``size-0``)."""
    for item in vectors()["cars"]:
        if item["source"].endswith(f"/{source_name}.bin"):
            return item
    raise KeyError(source_name)


def single_file_car(seed: str, size: int) -> tuple[bytes, int]:
    """The CAR of one generated input in the pack layout (SPEC §7.2–7.3): 1 MiB raw leaves,
    then the parent nodes, header root = first block; returns (bytes, block count).

    Built from the CAR and UnixFS primitives, to compare with the reference CARs."""
    out = io.BytesIO()
    writer = CarWriter(out)
    links = []
    for chunk in stream(seed, size):
        cid, length = leaf(chunk)
        writer.write_block(cid, chunk)
        links.append((cid, length))
    if not links:
        writer.write_block(EMPTY_FILE_CID, b"")
        links.append((EMPTY_FILE_CID, 0))
    for cid, data in range_root(links).blocks:
        writer.write_block(cid, data)
    return out.getvalue(), writer.block_count
