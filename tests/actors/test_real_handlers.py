"""The pool with the data path's own handlers: scan, then the pack jobs it creates."""
from __future__ import annotations

from actors.testing import PoolHarness, test_config
from actors import registry
from storage import catalog
from storage.db import connect
from storage.models import Job
from tests.actors.conftest import states


def test_pool_scans_and_packs_a_small_tree_with_the_registered_handlers(db_url, tmp_path):
    db = connect(db_url)
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    out.mkdir()
    for i in range(6):
        (src / ("sub" if i % 2 else ".") / f"f{i}.bin").write_bytes(bytes([i]) * (3000 + i))
    catalog.create_storage(db, "src", str(src))
    catalog.create_storage(db, "out", str(out))
    catalog.create_preparation(db, "p", ["src"], ["out"], max_size=8000)
    [scan] = catalog.start_scan(db, "p")
    config = test_config(db_url, concurrency=2, min_interval=0.05, max_interval=0.2)
    pool = PoolHarness(config, db=db, handlers=registry.resolve())
    with pool:
        assert pool.wait_for(lambda: states(db, [scan]) == {scan: "complete"}, 20)
        packs = [j.id for j in Job.select(Job.id).where(Job.type == "pack")]
        assert len(packs) >= 2
        assert pool.wait_for(lambda: set(states(db, packs).values()) == {"complete"}, 20)
        assert pool.signals.count("restarted") == 0
    assert len(list(out.glob("*.car"))) == len(packs)
    assert not list(out.glob(".pieceworks-*"))
