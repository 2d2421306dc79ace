"""Claim+complete throughput of no-op jobs, in jobs/s.

    python bench/claims.py [--jobs N] [--runs 3] [--pg-url URL] [--json]

Runs SQLite with 1 process, and PostgreSQL (when --pg-url or PIECEWORKS_TEST_PG_URL is set)
with 1 and 4 processes. Each process runs one thread that registers a worker, then claims
and completes jobs until the queue is empty. Every run uses a fresh database. Prints each
run and the median of the runs, with the claiming processes' own CPU time per job (the rest
of the time is the database's); `--json` prints one JSON document instead.
Targets: ≥ 1,000 jobs/s on SQLite, ≥ 2,000 jobs/s on PostgreSQL with 4 processes.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg2  # noqa: E402
from loguru import logger  # noqa: E402

from storage.db import connect  # noqa: E402
from storage.jobs import claim_job, complete_job  # noqa: E402
from storage.models import Job, OutputAttachment, Preparation, SourceAttachment, Storage  # noqa: E402
from storage.schema import init_schema  # noqa: E402
from storage.workers import register_worker  # noqa: E402


def _seed(url: str, jobs: int) -> None:
    db = connect(url)
    init_schema(db)
    with db.atomic():
        storage = Storage.create(name="src", path="/nonexistent/pieceworks/src")
        out = Storage.create(name="out", path="/nonexistent/pieceworks/out")
        prep = Preparation.create(name="bench", max_size=1 << 30, piece_size=1 << 31)
        att = SourceAttachment.create(preparation=prep, storage=storage)
        OutputAttachment.create(preparation=prep, storage=out)
        rows = [{"type": "pack", "state": "ready", "attachment": att.id} for _ in range(jobs)]
        for start in range(0, jobs, 1000):
            Job.insert_many(rows[start:start + 1000]).execute()
    db.close()


def _worker(url: str, barrier, results) -> None:
    logger.remove()  # the lost-CAS warnings of a benchmark are noise
    db = connect(url)
    worker_id = register_worker(db)
    barrier.wait()
    cpu0 = time.process_time()
    done = 0
    while True:
        job = claim_job(db, worker_id, ["pack"], max_attempts=5)
        if job is None:
            break
        done += complete_job(db, job.id, worker_id)
    results.put((done, time.perf_counter(), time.process_time() - cpu0))
    db.close()


client_cpu_ms: list[float] = []  # per run: the claiming processes' CPU per job, in ms


def run_once(url: str, processes: int, jobs: int) -> float:
    """Seed `jobs` ready jobs at `url`, drain them with `processes` processes; jobs/s."""
    _seed(url, jobs)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, barrier, results)) for _ in range(processes)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    outs = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    total = sum(n for n, _, _ in outs)
    if total != jobs:
        raise RuntimeError(f"drained {total} of {jobs} jobs")
    client_cpu_ms.append(1000 * sum(c for _, _, c in outs) / total)
    return total / (max(t for _, t, _ in outs) - start)


def _pg_db(admin_url: str):
    name = f"pw_bench_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return urlunsplit(urlsplit(admin_url)._replace(path="/" + name)), name


def _pg_drop(admin_url: str, name: str) -> None:
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg-url", default=os.environ.get("PIECEWORKS_TEST_PG_URL"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logger.remove()
    cases: list[tuple[str, int]] = [("sqlite", 1)]
    if args.pg_url:
        cases += [("postgres", 1), ("postgres", 4)]
    report = []
    for backend, processes in cases:
        rates = []
        for _ in range(args.runs):
            if backend == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    rates.append(run_once(f"sqlite:///{tmp}/bench.db", processes, args.jobs))
            else:
                url, name = _pg_db(args.pg_url)
                try:
                    rates.append(run_once(url, processes, args.jobs))
                finally:
                    _pg_drop(args.pg_url, name)
        cpu = statistics.median(client_cpu_ms[-len(rates):])
        entry = {"backend": backend, "processes": processes, "jobs": args.jobs,
                 "runs": [round(r, 1) for r in rates], "median": round(statistics.median(rates), 1),
                 "client_cpu_ms_per_job": round(cpu, 3)}
        report.append(entry)
        if not args.json:
            print(f"{backend:8} {processes} process(es): "
                  + ", ".join(f"{r:,.0f}" for r in rates)
                  + f" jobs/s; median {entry['median']:,.0f} jobs/s"
                  + f" (client CPU {cpu:.2f} ms/job)")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
