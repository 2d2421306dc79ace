"""Writing CAR files to an output directory: temp name, fsync, rename at completion.

A CAR is written to `<dir>/.pieceworks-<job_id>-<uuid>.car.tmp` and fsynced by the job
(`CarOutput.finish`). It keeps that name until the job has won its completion: the
outcome's `apply`, which runs inside `complete_job`'s transaction after the
compare-and-set, calls `CarOutput.commit`, which renames it to `<pieceCID>.car` and
fsyncs the directory. So a job that loses its compare-and-set never touched the final
name, and its `discard` (`CarOutput.abort`) removes only its own temp file: it can never
remove a CAR that another job's car row references or is about to reference.

Two jobs that produce the same piece write the same bytes (the name is the content's
piece CID), so when the final name already exists with our size, `commit` drops our temp
file instead of replacing it. A crash between the rename and the transaction's commit
leaves no temp file, only a complete CAR under its piece CID name (its job runs again and
finds it in place). A file left by a killed process is removed later by the reaper
(`sweep_temp_files`).
"""
from __future__ import annotations

import datetime as dt
import errno
import os
import random
import shutil
import uuid
from typing import Sequence

from loguru import logger

from dataprep.errors import DataprepError, OutputError, TransientError
from storage.rows import StorageRow

TEMP_PREFIX = ".pieceworks-"
TEMP_SUFFIX = ".car.tmp"
WRITE_BUFFER = 256 << 10  # small writes batched; 1 MiB leaves go straight through


def choose_output(outputs: Sequence[StorageRow], rng: random.Random | None = None
                  ) -> StorageRow | None:
    """Pick an output storage at random, weighted by free space (SPEC §7.1).

    Returns None when there are no outputs (inline-only).

    Raises:
        OutputError: outputs exist but none is usable ("storage not available").
    """
    if not outputs:
        return None
    weights: list[tuple[StorageRow, float]] = []
    for out in outputs:
        try:
            usage = shutil.disk_usage(out.path)
        except FileNotFoundError:
            logger.warning("output storage {} ({}) does not exist", out.name, out.path)
            continue
        except OSError as exc:
            logger.warning("output storage {} is not usable: {}", out.name, exc)
            continue
        if usage.total <= 0:
            weights.append((out, 1.0))
            continue
        free = usage.free / usage.total
        if free <= 0.01:
            logger.warning("output storage {} is full ({:.1%} free), skipped", out.name, free)
            continue
        if free <= 0.05:
            logger.warning("output storage {} is almost full ({:.1%} free)", out.name, free)
        weights.append((out, free))
    if not weights:
        names = ", ".join(o.name for o in outputs)
        raise OutputError(f"storage not available: no usable output storage among {names}")
    rng = rng or random.Random()
    return rng.choices([w[0] for w in weights], [w[1] for w in weights])[0]


class CarOutput:
    """One CAR being written to an output directory.

    Use `write()` for the bytes, `finish(piece_cid_str)` to fsync them, `commit()` (from
    the job's `apply`) to put the file in place, and `abort()` on any failure or a lost
    compare-and-set (safe to call twice; after `commit` it does nothing).
    """

    def __init__(self, directory: str, job_id: int) -> None:
        self.directory = directory
        self.temp_path = os.path.join(
            directory, f"{TEMP_PREFIX}{job_id}-{uuid.uuid4().hex}{TEMP_SUFFIX}")
        self.final_path: str | None = None
        self.committed = False
        try:
            self._file = open(self.temp_path, "xb", buffering=WRITE_BUFFER)
        except OSError as exc:
            raise _output_error(f"cannot create a CAR in output directory {directory}",
                                exc) from exc
        self.written = 0

    def write(self, data: bytes | memoryview) -> None:
        """Append bytes (buffered)."""
        try:
            self._file.write(data)
        except OSError as exc:
            self.abort()
            raise _output_error(f"cannot write {self.temp_path}", exc) from exc
        self.written += len(data)

    def write_zeros(self, count: int) -> None:
        """Append `count` zero bytes without holding them all in memory."""
        block = bytes(min(count, 1 << 20))
        while count > 0:
            n = min(count, len(block))
            self.write(memoryview(block)[:n])
            count -= n

    def finish(self, name: str) -> str:
        """Flush, fsync and close the temp file; returns its final name `<name>.car`.

        The file keeps its temp name until `commit()`.
        """
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except OSError as exc:
            self.abort()
            raise _output_error(f"cannot finish {self.temp_path}", exc) from exc
        self.final_path = os.path.join(self.directory, f"{name}.car")
        return os.path.basename(self.final_path)

    def commit(self) -> None:
        """Put the finished CAR under its final name, then fsync the directory.

        Runs in the job's `apply`, after its compare-and-set has won. If the final name
        already holds a file of our size, it is the same piece from another job: our temp
        file is dropped and theirs stays. Idempotent: `complete_job` may run `apply`
        again when its transaction is retried.

        Raises:
            OutputError / TransientError: the file cannot be put in place (the caller's
                transaction then rolls back, and `abort()` removes the temp file).
        """
        if self.final_path is None:
            raise OutputError(f"{self.temp_path} was never finished")
        final = self.final_path
        if self.committed:
            if not os.path.exists(final):
                raise OutputError(f"{final} vanished after it was written")
            return
        try:
            try:
                existing = os.stat(final).st_size
            except FileNotFoundError:
                existing = None
            if existing == self.written:
                os.unlink(self.temp_path)
                logger.debug("{} already in place (same piece): dropped {}", final,
                             self.temp_path)
            else:
                if existing is not None:
                    logger.warning("replacing {}: {} bytes, the piece has {}", final,
                                   existing, self.written)
                os.replace(self.temp_path, final)
            _fsync_dir(self.directory)
        except OSError as exc:
            raise _output_error(f"cannot move {self.temp_path} to {final}", exc) from exc
        self.committed = True

    def abort(self) -> None:
        """Close and remove the temp file (no error if already gone); never touches the
        final name, which another job may be using."""
        if self.committed:
            return
        try:
            self._file.close()
        except OSError:
            pass
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("cannot remove temp file {}: {}", self.temp_path, exc)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _output_error(what: str, exc: OSError) -> DataprepError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"{what}: disk full ({exc.strerror})")
    if exc.errno in (errno.EIO, errno.ETIMEDOUT, errno.EAGAIN):
        return TransientError(f"{what}: {exc.strerror}")
    return OutputError(f"{what}: {exc.strerror or exc}")


def sweep_temp_files(dirs: Sequence[str], older_than_seconds: float,
                     now: dt.datetime | float | None = None) -> int:
    """Remove `.pieceworks-*.car.tmp` files older than the given age; return the count.

    Args:
        dirs: output directories to sweep (missing ones are ignored).
        older_than_seconds: minimum age by mtime; a job still writing touches its file
            far more often than this.
        now: naive UTC datetime or Unix seconds (None: the current time).
    """
    if now is None:
        now_ts = dt.datetime.now(dt.UTC).timestamp()
    elif isinstance(now, dt.datetime):
        now_ts = (now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now).timestamp()
    else:
        now_ts = float(now)
    removed = 0
    for directory in dirs:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for de in entries:
            if not (de.name.startswith(TEMP_PREFIX) and de.name.endswith(TEMP_SUFFIX)):
                continue
            try:
                if not de.is_file(follow_symlinks=False):
                    continue
                if now_ts - de.stat(follow_symlinks=False).st_mtime < older_than_seconds:
                    continue
                os.unlink(de.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                logger.warning("cannot remove stale temp file {}: {}", de.path, exc)
                continue
            logger.info("removed stale temp file {}", de.path)
            removed += 1
    return removed
