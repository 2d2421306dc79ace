"""Scan throughput of the real scan handler, in files/s, on SQLite and PostgreSQL.

    python bench/scan.py [--files 100000] [--runs 3] [--pg-url URL] [--workdir DIR] [--json]

A tree of --files small files (100 per directory, 1 byte–4 KiB) is created once in
--workdir and reused. Each run creates a fresh database (SQLite file; on PostgreSQL a
scratch database, dropped afterwards), a preparation over the tree, and runs the scan job
the way a worker does: claim, `dataprep.handlers.HANDLERS['scan']`, then `complete_job`
with the outcome's `apply`, which groups the ranges into pack jobs. files/s counts both
(`listing_s` is the handler, `apply_s` the pack-job grouping). PostgreSQL runs when
--pg-url or PIECEWORKS_TEST_PG_URL is set. The bulk SHA-256 rate of the same run is
printed too, as every benchmark does, though scanning is not SHA-256 bound.

Target (issue 6): ≥ 10,000 files/s into SQLite.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile

from _common import base_parser, emit, peak_rss_mb, sha256_bulk_mbps
from _jobs import (PG_URL_ENV, make_preparation, pg_scratch, quiet_logs, remove_sqlite,
                   scan_preparation, sqlite_url, warm)

from storage.db import connect
from storage.models import Job, JobType

TARGET_FILES_PER_S = 10_000
PER_DIR = 100


def ensure_tree(directory: str, count: int) -> None:
    """`count` files of 1 B–4 KiB, 100 per directory, created once (marker file)."""
    marker = os.path.join(directory, ".complete")
    if os.path.exists(marker):
        return
    block = os.urandom(4096)
    for i in range(count):
        sub = os.path.join(directory, f"d{i // PER_DIR:05d}")
        if i % PER_DIR == 0:
            os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i:07d}.txt"), "wb") as f:
            f.write(block[: 1 + (i * 37) % 4096])
    with open(marker, "w") as f:
        f.write(str(count))


def one_run(url: str, tree: str, files: int) -> dict:
    """Scan `tree` into the database at `url`; files/s and the split."""
    db = connect(url)
    try:
        timing = scan_preparation(db, make_preparation(db, tree, None))
        packs = Job.select().where(Job.type == JobType.PACK).count()
    finally:
        db.close()
    total = timing.handler_s + timing.apply_s
    return {"files_per_s": files / total, "listing_s": timing.handler_s,
            "apply_s": timing.apply_s, "pack_jobs": packs}


def summarise(runs: list[dict]) -> dict:
    return {
        "files_per_s": round(statistics.median(r["files_per_s"] for r in runs)),
        "samples_files_per_s": [round(r["files_per_s"]) for r in runs],
        "listing_s": round(statistics.median(r["listing_s"] for r in runs), 3),
        "apply_s": round(statistics.median(r["apply_s"] for r in runs), 3),
        "pack_jobs": runs[-1]["pack_jobs"],
    }


def main() -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--pg-url", default=os.environ.get(PG_URL_ENV))
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                          "pieceworks-bench"))
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    quiet_logs()
    tree = os.path.join(args.workdir, f"scan-{args.files}")
    os.makedirs(tree, exist_ok=True)
    ensure_tree(tree, args.files)
    warm([tree])  # directory entries and inodes in cache, like a second scan
    result: dict[str, object] = {"files": args.files, "runs": args.runs,
                                 "load_avg_start": os.getloadavg()[0],
                                 "bulk_sha256_mbps": sha256_bulk_mbps(runs=3)}
    ok = True
    if not args.no_sqlite:
        runs = []
        for _ in range(args.runs):
            url = sqlite_url(args.workdir)
            try:
                runs.append(one_run(url, tree, args.files))
            finally:
                remove_sqlite(url)
        fig = summarise(runs)
        result |= {f"sqlite_{k}": v for k, v in fig.items()}
        ok &= fig["files_per_s"] >= TARGET_FILES_PER_S
    if args.pg_url:
        runs = []
        for _ in range(args.runs):
            with pg_scratch(args.pg_url) as url:
                runs.append(one_run(url, tree, args.files))
        result |= {f"postgres_{k}": v for k, v in summarise(runs).items()}
    result["peak_rss_mib"] = peak_rss_mb()
    result["load_avg_end"] = os.getloadavg()[0]
    result["target_met"] = ok
    emit(result, args.json)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
