"""The pack job (SPEC §7): stream a job's ranges into one CAR, compute its piece.

The CAR is read and written once, in 1 MiB leaves: each chunk is read with `readinto`
into one reused buffer, hashed with hashlib, and handed to the sink (the output file, and
commP on its own thread; see `dataprep.piece.CarSink`).
Memory holds one chunk, the links of the current range, and one small record per block
(for car_blocks rows), never the data. Nothing the job writes to the database is visible
before its completion: the rows are written by the outcome's `apply` (storage/packing.py,
dataprep/dirtree.py), which also moves the CAR to its `<pieceCID>.car` name
(dataprep/output.py).

A source file that no longer matches its scan (size, mtime, or gone) is checked before
each range is read. Changed before the read: the range is skipped with a warning (no CID,
no directory entry, not counted), since a rescan records the new version as a new file
row with its own pack job. Changed during the read: its bytes are already in the CAR, so
the run fails with `FileModified`, a `TransientError`; the retry then skips the file.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from loguru import logger

from dataprep.car import car_header
from dataprep.cid import EMPTY_FILE_CID, RAW_PREFIX, encode_uvarint
from dataprep.context import JobContext, JobOutcome
from dataprep.dirtree import update_directories
from dataprep.errors import (DataprepError, FileModified, JobCancelled, NoContent,
                             SourceError)
from dataprep.output import CarOutput, choose_output
from dataprep.piece import CarSink, seal_piece
from dataprep.source import LocalSource, source_for
from dataprep.unixfs import assemble_file, build_file_dag
from storage import dag, packing
from storage.rows import JobRow, RangeRow

CHUNK = 1 << 20
_FULL_PREFIX = encode_uvarint(36 + CHUNK)


@dataclass
class RangeResult:
    """What packing one range produced."""

    range_id: int
    file_id: int
    cid: bytes | None          # None: skipped (changed since the scan, or unreadable)
    read: int                  # bytes actually read


@dataclass
class StreamResult:
    root: bytes | None = None
    ranges: list[RangeResult] = field(default_factory=list)
    blocks: list[packing.BlockRow] = field(default_factory=list)


class _Stream:
    """Writes blocks in CAR form to a sink, header first, recording car_blocks rows."""

    def __init__(self, sink: CarSink, record: bool) -> None:
        self.sink = sink
        self.record = record
        self.result = StreamResult()

    def _start(self, cid: bytes) -> None:
        self.result.root = cid
        self.sink.write(car_header(cid))

    def leaf(self, cid: bytes, data: memoryview, file_id: int, file_offset: int) -> None:
        if self.result.root is None:
            self._start(cid)
        n = len(data)
        prefix = _FULL_PREFIX if n == CHUNK else encode_uvarint(36 + n)
        offset = self.sink.offset
        self.sink.write(prefix + cid)
        if n:
            self.sink.write(data)
        if self.record:
            self.result.blocks.append(packing.BlockRow(
                cid, offset, len(prefix) + 36 + n, prefix, None, file_offset, file_id))

    def node(self, cid: bytes, data: bytes) -> None:
        if self.result.root is None:
            self._start(cid)
        prefix = encode_uvarint(len(cid) + len(data))
        offset = self.sink.offset
        self.sink.write(prefix + cid + data)
        if self.record:
            self.result.blocks.append(packing.BlockRow(
                cid, offset, len(prefix) + len(cid) + len(data), prefix, data, 0, None))


def _modified(path: str, why: str) -> FileModified:
    return FileModified(f"file has been modified: {path} ({why})")


def _change(source: LocalSource, rng: RangeRow) -> str | None:
    """Why the file no longer matches its scan (size and mtime, SPEC §7.3), or None.

    Raises:
        PermissionError / OSError: the file cannot be stat'ed.
        SourceError: it is no longer a regular file.
    """
    f = rng.file
    try:
        st = source.stat(f.path)
    except FileNotFoundError:
        return "it no longer exists"
    if f.size >= 0 and st.size != f.size:
        return f"size {st.size}, scanned {f.size}"
    if st.mtime_ns != f.last_modified_nano:
        return f"mtime {st.mtime_ns}, scanned {f.last_modified_nano}"
    return None


def _check(source: LocalSource, rng: RangeRow) -> None:
    """After a range was streamed: it must still be the file of the scan."""
    why = _change(source, rng)
    if why is not None:
        raise _modified(rng.file.path, why)


def _fill(fobj, view: memoryview, want: int) -> int:
    """Read up to `want` bytes into view[:want]; fewer only at end of file."""
    got = 0
    while got < want:
        n = fobj.readinto(view[got:want])
        if not n:
            break
        got += n
    return got


class _Packer:
    def __init__(self, job: JobRow, ctx: JobContext, source: LocalSource, stream: _Stream,
                 retries: int, delay: float) -> None:
        self.job, self.ctx, self.source, self.stream = job, ctx, source, stream
        self.retries, self.delay = retries, delay
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)
        self.done = 0
        self.skipped: list[str] = []   # paths of the ranges skipped, in job order
        self.total = sum(max(r.length, 0) for r in job.ranges)

    def _open(self, path: str, offset: int):
        return self.source.open(path, offset)

    def _skip_changed(self, rng: RangeRow, why: str) -> RangeResult:
        # Nothing of this range is in the CAR yet, so the job can go on without it: the
        # file gets no CID and no directory entry, and a rescan records its new version
        # (a new file row, new ranges, a new pack job). Failing instead would block the
        # job's other files for good, since every retry would see the same change.
        logger.warning("pack job {}: file has been modified since the scan, skipped: {} "
                       "(scan again to pack its new version): {}", self.job.id,
                       rng.file.path, why)
        self.skipped.append(rng.file.path)
        return RangeResult(rng.id, rng.file.id, None, 0)

    def _skip_unreadable(self, rng: RangeRow, exc: OSError) -> RangeResult:
        path = rng.file.path
        if not self.source.skip_inaccessible:
            raise SourceError(f"cannot open {path}: {exc.strerror}") from exc
        logger.warning("pack job {}: skipping unreadable file {}: {}", self.job.id, path,
                       exc.strerror)
        self.skipped.append(path)
        return RangeResult(rng.id, rng.file.id, None, 0)

    def pack_range(self, rng: RangeRow) -> RangeResult:
        """Stream one range, or skip it (changed since the scan, or unreadable and
        skip_inaccessible set) before any of its bytes is written."""
        path = rng.file.path
        try:
            why = _change(self.source, rng)
        except PermissionError as exc:
            return self._skip_unreadable(rng, exc)
        if why is not None:
            return self._skip_changed(rng, why)
        links: list[tuple[bytes, int]] = []
        if rng.length == 0:
            self.stream.leaf(EMPTY_FILE_CID, self.view[:0], rng.file.id, rng.offset)
            return RangeResult(rng.id, rng.file.id, EMPTY_FILE_CID, 0)
        try:
            fobj = self._open(path, rng.offset)
        except FileNotFoundError:
            return self._skip_changed(rng, "it no longer exists")
        except PermissionError as exc:
            return self._skip_unreadable(rng, exc)
        except OSError as exc:
            raise SourceError(f"cannot open {path}: {exc.strerror}") from exc
        remaining = rng.length if rng.length >= 0 else -1
        pos = rng.offset
        attempt = 0
        try:
            while remaining != 0:
                if self.ctx.cancel.is_set():
                    raise JobCancelled(f"pack job {self.job.id} cancelled")
                want = CHUNK if remaining < 0 else min(CHUNK, remaining)
                try:
                    n = _fill(fobj, self.view, want)
                except OSError as exc:
                    attempt += 1
                    if attempt > self.retries:
                        raise SourceError(f"cannot read {path} at offset {pos}: "
                                          f"{exc.strerror}") from exc
                    logger.warning("pack job {}: read error on {} at {}, retry {}: {}",
                                   self.job.id, path, pos, attempt, exc)
                    fobj.close()
                    if self.ctx.cancel.wait(self.delay):
                        raise JobCancelled(f"pack job {self.job.id} cancelled") from exc
                    try:
                        fobj = self._open(path, pos)
                    except FileNotFoundError as again:
                        raise _modified(path, "it no longer exists") from again
                    except OSError as again:
                        raise SourceError(f"cannot reopen {path}: {again.strerror}") from again
                    continue
                if n == 0:
                    if remaining > 0:
                        raise _modified(path, f"ended at offset {pos}")
                    break
                if remaining > 0 and n < want:
                    raise _modified(path, f"ended at offset {pos + n}")
                data = self.view[:n]
                cid = RAW_PREFIX + hashlib.sha256(data).digest()
                self.stream.leaf(cid, data, rng.file.id, pos)
                links.append((cid, n))
                pos += n
                if remaining > 0:
                    remaining -= n
                self.done += n
                self.ctx.progress(self.done, self.total)
                if remaining < 0 and n < CHUNK:
                    break
        finally:
            fobj.close()
        _check(self.source, rng)  # changed while we read it?
        read = pos - rng.offset
        if not links:  # unknown length and empty file
            self.stream.leaf(EMPTY_FILE_CID, self.view[:0], rng.file.id, rng.offset)
            return RangeResult(rng.id, rng.file.id, EMPTY_FILE_CID, 0)
        if len(links) == 1:
            return RangeResult(rng.id, rng.file.id, links[0][0], read)
        dag = build_file_dag(links)
        for cid, node in dag.blocks:
            self.stream.node(cid, node)
        return RangeResult(rng.id, rng.file.id, dag.root_cid, read)


def _client_float(cfg: dict, key: str, default: float) -> float:
    try:
        return float(cfg.get(key, default))
    except (TypeError, ValueError):
        return default


def pack_handler(job: JobRow, ctx: JobContext) -> JobOutcome:
    """Run a pack job; see the module docstring."""
    att = job.attachment
    if att is None:
        raise DataprepError(f"job {job.id} has no attachment (orphaned by prep deletion)")
    prep = att.preparation
    if not job.ranges:
        raise DataprepError(f"pack job {job.id}: no content to pack (no ranges)")
    out_storage = choose_output(att.outputs)
    if prep.no_inline and out_storage is None:
        raise DataprepError(f"preparation {prep.name} has no_inline set but no output storage")
    cfg = att.source.client_config
    source = source_for(att.source.type, att.source.path, cfg)
    output = CarOutput(out_storage.path, job.id) if out_storage is not None else None
    started = time.monotonic()
    sink = CarSink(output)
    try:
        stream = _Stream(sink, record=not prep.no_inline)
        packer = _Packer(job, ctx, source, stream,
                         retries=int(_client_float(cfg, "retryMaxCount", 10)),
                         delay=_client_float(cfg, "retryDelay", 1.0))
        for rng in job.ranges:
            if ctx.cancel.is_set():
                raise JobCancelled(f"pack job {job.id} cancelled")
            stream.result.ranges.append(packer.pack_range(rng))
        if all(r.cid is None for r in stream.result.ranges):
            raise NoContent(f"pack job {job.id}: no content to pack: every range was "
                            f"skipped (changed since the scan or unreadable): "
                            f"{_paths(packer.skipped)}")
        min_piece = prep.min_piece_size or (1 << 20)
        total_len = sum(r.length for r in job.ranges)
        piece, storage_path = seal_piece(sink, prep.min_piece_size,
                                         may_pad=output is None or total_len < min_piece / 2)
    except BaseException:
        sink.close()
        if output is not None:
            output.abort()
        raise
    result = stream.result
    elapsed = time.monotonic() - started
    logger.info("pack job {}: {} ranges ({} skipped), CAR {} bytes, piece {} ({} bytes) "
                "in {:.2f}s", job.id, len(job.ranges), len(packer.skipped), sink.offset,
                piece.name, piece.piece_size, elapsed)
    record = packing.PackRecord(
        job_id=job.id, attachment_id=att.id, preparation_id=prep.id,
        storage_id=out_storage.id if out_storage is not None else None,
        storage_path=storage_path, root_cid=result.root, piece=piece,
        ranges=[(r.range_id, r.file_id, r.cid, r.read) for r in result.ranges],
        blocks=result.blocks, update_dag=not prep.no_dag)

    def apply() -> None:
        # Serialise the applies of one attachment: whether a split file is whole is read
        # here, and on PostgreSQL two packs of its ranges would each miss the other's
        # uncommitted CID, leaving the file without one (tests/dataprep/test_concurrent_apply).
        dag.lock_root(ctx.db, att.id)
        updated = packing.write_pack_result(ctx.db, record, assemble_file)
        if record.update_dag and updated:
            update_directories(ctx.db, att.id, updated)
        if output is not None:
            output.commit()  # last: a failure above leaves only our temp file to discard

    def discard() -> None:
        if output is not None:
            output.abort()  # our temp file only, never a <pieceCID>.car

    return JobOutcome(apply=apply, discard=discard,
                      summary=f"piece {piece.name}, {sink.offset} bytes")


def _paths(paths: list[str], shown: int = 20) -> str:
    """Paths for a message: the first `shown`, then how many more."""
    text = ", ".join(paths[:shown])
    return text + (f" and {len(paths) - shown} more" if len(paths) > shown else "")
