"""Peak resident memory of a real pack (issue 6: < 150 MB for a 2 GiB file), measured in a
fresh interpreter so that native buffers (read buffer, commP queue, writer, SQLite) count,
which tracemalloc in tests/dataprep/test_memory.py cannot see."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]


def _random_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))


def _pack_in_child(tmp_path: Path, size: int) -> dict:
    src = tmp_path / f"src-{size}"
    _random_file(src / "data.bin", size)
    work = tmp_path / f"work-{size}"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-m", "tests.perf.pack_child", str(src), str(work)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result["cars"]) == 1, result  # the pack really wrote its CAR
    return result


def test_packing_a_64_mib_file_adds_only_a_few_mib_to_peak_rss(tmp_path):
    result = _pack_in_child(tmp_path, 64 * MiB)
    growth = result["peak_mib"] - result["before_pack_mib"]
    # One read buffer, a few queued 1 MiB chunks for commP, the writer's buffer: a few MiB.
    assert growth < 24, result
    assert result["peak_mib"] * MiB < 150e6, result


def test_peak_rss_of_a_pack_does_not_grow_with_the_file_size(tmp_path):
    small = _pack_in_child(tmp_path, 8 * MiB)
    big = _pack_in_child(tmp_path, 96 * MiB)
    grew_small = small["peak_mib"] - small["before_pack_mib"]
    grew_big = big["peak_mib"] - big["before_pack_mib"]
    # 12 times the data; only the per-block car_blocks records (a few dozen bytes per
    # MiB) may add up.
    assert grew_big - grew_small < 8, (small, big)
