"""Fixtures of the end-to-end tier: one copy of the data set per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.dataset import make_dataset


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """A read-only source tree shared by the e2e tests (stdlib files + big random files)."""
    return make_dataset(tmp_path_factory.mktemp("e2e") / "data")
