"""Pack throughput of the real pack handler, against hashlib's bulk SHA-256 of the same run.

    python bench/pack.py [--runs 3] [--big-mib 1024] [--small-files 10000] [--rss-mib 2048]
                         [--workdir DIR] [--cases big,small] [--no-rss] [--json]

What is measured is what a user gets: a SQLite database is built by the real scan handler
over the source, the pack job is claimed with `claim_job`, run by
`dataprep.handlers.HANDLERS['pack']`, and its outcome applied through `complete_job`.
The rate is source bytes over the wall time of handler + apply, split in `stream`
(the handler: read, leaf hashing, CAR writing, commP) and `apply` (the database rows).

Cases: one file of --big-mib MiB ("big") and --small-files files of 1–64 KiB ("small"),
each with 1 job and with 2 concurrent jobs (two threads of one process, as two workers of
one runner do, each over its own file or set), each with an output directory (CAR written
to disk, fsynced) and inline-only. Sources are read once before timing (page cache).
Every run is paired with one bulk SHA-256 sample taken just before it; `ratio` is the
median of the per-run ratios. Peak RSS of packing one --rss-mib MiB file is measured in a
fresh subprocess (`--rss-child`).

Targets (issue 6): big, 1 job ≥ 0.14× bulk SHA-256; 2 jobs ≥ 1.7× 1 job; peak RSS of a
2 GiB pack < 150 MB. Test data is kept in --workdir and reused across runs.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _common import base_parser, emit, payload, peak_rss_mb, rate_mbps, sha256_rate
from _jobs import (claim, make_preparation, quiet_logs, remove_sqlite, run_claimed,
                   run_in_threads, scan_preparation, sqlite_url, warm)

from storage.db import connect
from storage.workers import register_worker

MiB = 1 << 20
TARGET_RATIO = 0.14
TARGET_SPEEDUP = 1.7
TARGET_RSS_MB = 150


def _ensure_big(path: str, size: int) -> None:
    """One file of `size` random bytes (random MiB blocks), created once."""
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
        f.write(os.urandom(size % MiB))
    os.replace(tmp, path)


def _ensure_small(directory: str, count: int, seed: int) -> int:
    """`count` files of 1–64 KiB (uniform) in 100-file subdirectories; returns total bytes."""
    marker = os.path.join(directory, ".complete")
    rng = random.Random(seed)
    sizes = [rng.randint(1 << 10, 64 << 10) for _ in range(count)]
    if not os.path.exists(marker):
        shutil.rmtree(directory, ignore_errors=True)
        block = os.urandom(64 << 10)
        for i, size in enumerate(sizes):
            sub = os.path.join(directory, f"d{i // 100:04d}")
            os.makedirs(sub, exist_ok=True)
            with open(os.path.join(sub, f"f{i:06d}.bin"), "wb") as f:
                # Distinct content per file: rotate the block by the file number.
                k = (i * 4099) % len(block)
                f.write((block[k:] + block[:k])[:size])
        with open(marker, "w") as f:
            f.write(str(count))
    return sum(sizes)


def _sources(workdir: str, kind: str, jobs: int, args) -> tuple[list[str], int]:  # type: ignore[no-untyped-def]
    """The source directories for `jobs` jobs of `kind`, and the bytes of one."""
    dirs = []
    nbytes = 0
    for j in range(jobs):
        if kind == "big":
            d = os.path.join(workdir, f"big-{args.big_mib}-{j}")
            _ensure_big(os.path.join(d, "data.bin"), args.big_mib * MiB)
            nbytes = args.big_mib * MiB
        else:
            d = os.path.join(workdir, f"small-{args.small_files}-{j}")
            nbytes = _ensure_small(d, args.small_files, seed=j)
        dirs.append(d)
    return dirs, nbytes


def _one_run(workdir: str, sources: list[str], nbytes: int, with_output: bool,
             one_cpu: bool = False) -> dict:
    """Scan each source into a fresh SQLite database, then pack them all at once.

    one_cpu: run the pack with this thread (and so the threads it starts) bound to one
    CPU, to measure what one job does with one core.
    """
    url = sqlite_url(workdir)
    db = connect(url)
    outs: list[str] = []
    try:
        for src in sources:
            out = tempfile.mkdtemp(prefix="out-", dir=workdir) if with_output else None
            if out:
                outs.append(out)
            scan_preparation(db, make_preparation(db, src, out))
        claimed = []
        for _ in sources:
            worker = register_worker(db)
            claimed.append((claim(db, worker, "pack"), worker))
        warm(sources)
        bulk = sha256_rate(_BULK)
        cpu0 = time.process_time()
        cpus = os.sched_getaffinity(0)
        if one_cpu:
            os.sched_setaffinity(0, {min(cpus)})
        try:
            if len(claimed) == 1:
                timings = [run_claimed(db, *claimed[0])]
            else:
                timings = run_in_threads(db, claimed)
        finally:
            os.sched_setaffinity(0, cpus)
        cpu = time.process_time() - cpu0
        wall = max(t.ended for t in timings) - min(t.started for t in timings)
        total = nbytes * len(sources)
        return {"mbps": rate_mbps(total, wall), "bulk": bulk, "cores": cpu / wall,
                "cpu_ms_per_mb": cpu * 1000 / (total / 1e6),
                "stream_s": max(t.handler_s for t in timings),
                "apply_s": max(t.apply_s for t in timings), "wall_s": wall}
    finally:
        db.close()
        remove_sqlite(url)
        for out in outs:
            shutil.rmtree(out, ignore_errors=True)


def _case(workdir: str, kind: str, jobs: int, with_output: bool, args,  # type: ignore[no-untyped-def]
          one_cpu: bool = False) -> dict:
    sources, nbytes = _sources(workdir, kind, jobs, args)
    runs = [_one_run(workdir, sources, nbytes, with_output, one_cpu) for _ in range(args.runs)]
    return {
        "mbps": statistics.median(r["mbps"] for r in runs),
        "ratio": round(statistics.median(r["mbps"] / r["bulk"] for r in runs), 3),
        "samples_mbps": [round(r["mbps"], 1) for r in runs],
        "paired_bulk_mbps": [round(r["bulk"], 1) for r in runs],
        "stream_s": round(statistics.median(r["stream_s"] for r in runs), 3),
        "apply_s": round(statistics.median(r["apply_s"] for r in runs), 3),
        "wall_s": round(statistics.median(r["wall_s"] for r in runs), 3),
        # CPU time of all threads over wall time, and per MB: one job already keeps more
        # than one core busy (commP runs on its own thread), which caps the 2-job speedup
        # at 2 / cores.
        "cores_busy": round(statistics.median(r["cores"] for r in runs), 2),
        "cpu_ms_per_mb": round(statistics.median(r["cpu_ms_per_mb"] for r in runs), 2),
    }


def _vm_hwm_mib() -> float:
    """Peak RSS of this process image, in MiB, from /proc (Linux).

    Not getrusage: its ru_maxrss survives exec, so a child spawned by this (large)
    benchmark process would report the parent's size.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return peak_rss_mb()


def rss_child(source_dir: str, workdir: str) -> int:
    """In this fresh process: scan `source_dir`, pack it to an output dir; print peak RSS."""
    quiet_logs()
    before = _vm_hwm_mib()
    url = sqlite_url(workdir)
    db = connect(url)
    out = tempfile.mkdtemp(prefix="out-rss-", dir=workdir)
    try:
        scan_preparation(db, make_preparation(db, source_dir, out))
        worker = register_worker(db)
        timing = run_claimed(db, claim(db, worker, "pack"), worker)
    finally:
        db.close()
        remove_sqlite(url)
        shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"peak_rss_mib": _vm_hwm_mib(), "rss_before_pack_mib": before,
                      "wall_s": timing.ended - timing.started}))
    return 0


def _measure_rss(workdir: str, mib: int) -> dict:
    src = os.path.join(workdir, f"big-{mib}-rss")
    _ensure_big(os.path.join(src, "data.bin"), mib * MiB)
    warm([src])
    proc = subprocess.run([sys.executable, __file__, "--rss-child", src, "--workdir", workdir],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


_BULK: memoryview  # what the paired SHA-256 samples hash; set by main()


def main() -> int:
    global _BULK
    parser = base_parser(__doc__)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                          "pieceworks-bench"))
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--small-files", type=int, default=10_000)
    parser.add_argument("--rss-mib", type=int, default=2048)
    parser.add_argument("--cases", default="big,small", help="comma-separated: big, small")
    parser.add_argument("--jobs", default="1,2", help="comma-separated job counts")
    parser.add_argument("--outputs", default="disk,inline", help="disk, inline or both")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak RSS run")
    parser.add_argument("--rss-child", metavar="SOURCE_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    if args.rss_child:
        return rss_child(args.rss_child, args.workdir)
    quiet_logs()
    _BULK = memoryview(payload(256 * MiB))
    result: dict[str, object] = {"runs": args.runs, "load_avg_start": os.getloadavg()[0]}
    result["bulk_sha256_mbps"] = statistics.median(sha256_rate(_BULK) for _ in range(3))
    ok = True
    for kind in args.cases.split(","):
        for mode in args.outputs.split(","):
            one = one_core = None
            if kind == "big" and "1" in args.jobs.split(",") and "2" in args.jobs.split(","):
                # One job already keeps more than one core busy (commP on its own thread),
                # so "2 jobs vs 1 job" cannot reach 2x; the scaling the threads give is
                # 2 jobs on 2 cores against 1 job on 1 core.
                fig = _case(args.workdir, kind, 1, mode == "disk", args, one_cpu=True)
                key = f"{kind}_1job_1cpu_{mode}"
                one_core = result[f"{key}_mbps"] = fig["mbps"]
                result[f"{key}_ratio"] = fig["ratio"]
                result[f"{key}_samples_mbps"] = fig["samples_mbps"]
            for jobs in (int(j) for j in args.jobs.split(",")):
                key = f"{kind}_{jobs}job_{mode}"
                fig = _case(args.workdir, kind, jobs, mode == "disk", args)
                result[f"{key}_mbps"] = fig.pop("mbps")
                result[f"{key}_ratio"] = fig.pop("ratio")
                for name, value in fig.items():
                    result[f"{key}_{name}"] = value
                if jobs == 1:
                    one = result[f"{key}_mbps"]
                elif one:
                    speedup = round(result[f"{key}_mbps"] / one, 3)  # type: ignore[operator]
                    result[f"{kind}_{mode}_speedup_2_jobs"] = speedup
                    if one_core:
                        result[f"{kind}_{mode}_speedup_2_jobs_vs_1_job_on_1_cpu"] = round(
                            result[f"{key}_mbps"] / one_core, 3)  # type: ignore[operator]
                    if kind == "big":
                        ok &= speedup >= TARGET_SPEEDUP
                if kind == "big" and jobs == 1:
                    ok &= result[f"{key}_ratio"] >= TARGET_RATIO  # type: ignore[operator]
    if not args.no_rss:
        rss = _measure_rss(args.workdir, args.rss_mib)
        result[f"rss_{args.rss_mib}mib_peak_mib"] = rss["peak_rss_mib"]
        result[f"rss_{args.rss_mib}mib_before_pack_mib"] = rss["rss_before_pack_mib"]
        ok &= rss["peak_rss_mib"] * MiB / 1e6 < TARGET_RSS_MB
    result["load_avg_end"] = os.getloadavg()[0]
    result["targets_met"] = ok
    emit(result, args.json)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
