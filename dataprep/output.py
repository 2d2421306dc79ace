"""Writing CAR files to an output directory: temp name, fsync, atomic rename.

A CAR is written to `<dir>/.pieceworks-<job_id>-<uuid>.car.tmp`, fsynced, then renamed to
`<pieceCID>.car` and the directory fsynced. Two jobs that produce the same piece write the
same bytes, so whichever rename lands last replaces an identical file and readers always
see a complete one. A failure, a cancel or a lost compare-and-set removes the temp file
(`CarOutput.abort`); a file left by a killed process is removed later by the reaper
(`sweep_temp_files`).
"""
from __future__ import annotations

import datetime as dt
import errno
import os
import random
import shutil
import uuid
from typing import Callable, Sequence

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

    Use `write()` for the bytes, then `finish(piece_cid_str)` to fsync and rename; call
    `abort()` on any failure (safe to call twice, and after `finish` it does nothing).
    """

    def __init__(self, directory: str, job_id: int) -> None:
        self.directory = directory
        self.temp_path = os.path.join(
            directory, f"{TEMP_PREFIX}{job_id}-{uuid.uuid4().hex}{TEMP_SUFFIX}")
        self.final_path: str | None = None
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
        """Flush, fsync and rename to `<name>.car`; returns the final file name."""
        final = os.path.join(self.directory, f"{name}.car")
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.temp_path, final)
            _fsync_dir(self.directory)
        except OSError as exc:
            self.abort()
            raise _output_error(f"cannot finish {self.temp_path}", exc) from exc
        self.final_path = final
        return os.path.basename(final)

    def abort(self) -> None:
        """Close and remove the temp file (no error if already gone)."""
        if self.final_path is not None:
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


def remove_unreferenced(directory: str, name: str,
                        is_referenced: Callable[[], bool]) -> bool:
    """Remove `<directory>/<name>` unless `is_referenced()` says a car row uses it.

    Used by a job's `discard`: a lost compare-and-set must not delete the file of
    another job that produced the same piece and won.

    Returns:
        True when the file was removed.
    """
    if is_referenced():
        logger.debug("keeping {}: a car row references it", name)
        return False
    try:
        os.unlink(os.path.join(directory, name))
    except FileNotFoundError:
        return False
    return True


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
