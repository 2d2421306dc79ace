"""The scan job (SPEC §6): list the source, record file versions and ranges, group ranges
into pack jobs.

Files, directories and ranges are recorded while the listing streams (in batches;
idempotent on rerun). The pack jobs are created by the outcome's `apply`, inside the
job's completion transaction, by grouping *every* unassigned range of the attachment in
id order: leftovers of an interrupted scan come first, exactly as SPEC §6.1 step 1 does.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from loguru import logger

from dataprep.commp import next_pow2
from dataprep.context import JobContext, JobOutcome
from dataprep.errors import DataprepError, JobCancelled
from dataprep.source import source_for
from storage import scanning
from storage.db import Database
from storage.rows import JobRow

MiB = 1 << 20
GiB = 1 << 30
CAR_HEADER_LEN = 59



def split_size(max_size: int) -> int:
    """Range length for files larger than it: min(NextPow2(max_size) / 4, 1 GiB)."""
    return min(next_pow2(max_size) // 4, GiB)


def estimate(length: int) -> int:
    """Estimated CAR bytes of one range (SPEC §6.5)."""
    if length == 0:
        return 37
    n = (length - 1) // MiB + 1 if length > 0 else 1  # unknown length (-1): one chunk
    est = length + 39 * n
    if n > 1:
        est += 52 * n + 44
    return est


def group_ranges(ranges: Iterable[tuple[int, int]], max_size: int) -> Iterator[list[int]]:
    """Group (range id, length) in order into lists of ids whose estimate fits max_size.

    A range that does not fit even an empty group gets a group of its own: unlike
    Singularity (SPEC §10 #27), no empty group is ever produced.
    """
    ids: list[int] = []
    total = CAR_HEADER_LEN
    for range_id, length in ranges:
        est = estimate(length)
        if ids and total + est > max_size:
            yield ids
            ids, total = [], CAR_HEADER_LEN
        ids.append(range_id)
        total += est
    if ids:
        yield ids


def create_pack_jobs(db: Database, attachment_id: int, max_size: int) -> list[int]:
    """Group every unassigned range of the attachment into new `ready` pack jobs."""
    return [scanning.create_pack_job(db, attachment_id, ids)
            for ids in group_ranges(scanning.iter_unassigned_ranges(db, attachment_id),
                                    max_size)]


def scan_handler(job: JobRow, ctx: JobContext) -> JobOutcome:
    """Run a scan job; see the module docstring."""
    att = job.attachment
    if att is None:
        raise DataprepError(f"job {job.id} has no attachment (orphaned by prep deletion)")
    prep = att.preparation
    if prep.max_size <= 0:
        raise DataprepError(f"preparation {prep.name} has max_size {prep.max_size}")
    source = source_for(att.source.type, att.source.path, att.source.client_config)
    ssize = split_size(prep.max_size)
    dirs = scanning.DirectoryCache(ctx.db, att.id)
    batch: list[scanning.NewFile] = []
    seen = recorded = 0
    seen_bytes = 0
    # Batches grow from FILE_BATCH to SCAN_BATCH files: the first is recorded (and
    # reported) early, the later ones pay for fewer transactions.
    limit = scanning.FILE_BATCH

    def flush() -> None:
        nonlocal recorded, limit
        recorded += scanning.record_files(ctx.db, att.id, batch, ssize)
        batch.clear()
        limit = min(2 * limit, scanning.SCAN_BATCH)

    for entry in source.walk():
        if ctx.cancel.is_set():
            raise JobCancelled(f"scan job {job.id} cancelled")
        if entry.is_dir:
            dirs.ensure(entry.path)
            continue
        parent = entry.path.rpartition("/")[0]
        batch.append(scanning.NewFile(entry.path, entry.size, entry.mtime_ns,
                                      dirs.ensure(parent)))
        seen += 1
        seen_bytes += entry.size
        if len(batch) >= limit:
            flush()
            ctx.progress(seen_bytes, 0)
    flush()
    ctx.progress(seen_bytes, seen_bytes)
    logger.info("scan job {}: {} files listed, {} new versions recorded", job.id, seen,
                recorded)

    def apply() -> None:
        jobs = create_pack_jobs(ctx.db, att.id, prep.max_size)
        logger.info("scan job {}: {} pack jobs created", job.id, len(jobs))

    return JobOutcome(apply=apply, summary=f"{seen} files listed, {recorded} new")
