"""The repository's copy of the reference vectors is the shared original, byte for byte."""
from __future__ import annotations

import pytest

from tests.vectors import SHARED_VECTORS, VECTORS_COPY


def test_the_vectors_copy_in_the_repository_equals_the_shared_original():
    if not SHARED_VECTORS.exists():
        pytest.skip(f"no shared vectors beside the repository ({SHARED_VECTORS})")
    assert VECTORS_COPY.read_bytes() == SHARED_VECTORS.read_bytes()
