"""The narrow source interface, local filesystem first: list, stat, open at offset.

Paths
-----
Every path handed to the rest of pieceworks is *relative to the source root*, `/`-separated,
and made of *escaped names*. The database `path` column is text, and PostgreSQL rejects
both NUL and the surrogates Python uses for undecodable bytes, so a file name (bytes on
POSIX) is stored in a reversible escaped form:

- a backslash `\\` becomes two backslashes `\\\\`;
- a byte that is not part of valid UTF-8 becomes `\\xHH` (two lowercase hex digits);
- everything else (including newlines) is kept as is.

`escape_name(raw)` and `unescape_name(text)` are exact inverses, so
`unescape_name(escape_name(b)) == b` for every name `b`. Valid UTF-8 names without a
backslash are stored unchanged. dag-pb link names always use the raw bytes
(`unescape_name`), so CIDs do not depend on the escaping.

Entries that are not regular files or directories are skipped with a warning: symbolic
links are never followed (so a link loop cannot hang a scan), and FIFOs, sockets and
devices are never opened.
"""
from __future__ import annotations

import os
import stat
from collections import deque
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from loguru import logger

from dataprep.errors import SourceError


def escape_name(raw: bytes) -> str:
    """The text form of one raw file name (see the module docstring)."""
    if b"\\" not in raw:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def unescape_name(text: str) -> bytes:
    """The raw bytes of a name stored by `escape_name`."""
    if "\\" not in text:
        return text.encode("utf-8")
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        j = text.find("\\", i)
        if j < 0:
            out += text[i:].encode("utf-8")
            break
        out += text[i:j].encode("utf-8")
        if text.startswith("\\\\", j):
            out += b"\\"
            i = j + 2
        elif text.startswith("\\x", j) and j + 4 <= n:
            out.append(int(text[j + 2:j + 4], 16))
            i = j + 4
        else:
            raise ValueError(f"not an escaped name: {text!r}")
    return bytes(out)


def escape_path(raw: bytes) -> str:
    """A raw relative path (`/`-separated bytes) in escaped text form."""
    return "/".join(escape_name(part) for part in raw.split(b"/"))


def unescape_path(text: str) -> bytes:
    """The raw bytes of an escaped relative path."""
    return b"/".join(unescape_name(part) for part in text.split("/"))


@dataclass(frozen=True, slots=True)
class Entry:
    """One listed entry.

    Attributes:
        path: escaped relative path (`a/b/c.bin`); directories have no trailing slash.
        is_dir: a directory (size and mtime are then 0).
        size: bytes.
        mtime_ns: modification time, Unix ns.
    """

    path: str
    is_dir: bool
    size: int = 0
    mtime_ns: int = 0


@dataclass(frozen=True, slots=True)
class Stat:
    size: int
    mtime_ns: int


class LocalSource:
    """A directory on the local filesystem.

    Args:
        root: the source root directory.
        skip_inaccessible: an unreadable directory is skipped with a warning instead of
            failing the listing.
    """

    def __init__(self, root: str, *, skip_inaccessible: bool = False) -> None:
        self.root = os.fsencode(root)
        self.skip_inaccessible = skip_inaccessible
        self._last: tuple[str, bytes] = ("", self.root)

    def _abs(self, path: str) -> bytes:
        # Pack resolves each path three times in a row (stat, open, stat again): keep the
        # last one, which for many small files saves a noticeable share of the work.
        last = self._last
        if path == last[0]:
            return last[1]
        resolved = os.path.join(self.root, unescape_path(path)) if path else self.root
        self._last = (path, resolved)
        return resolved

    def check_root(self) -> None:
        """Raise SourceError unless the root is a readable directory."""
        try:
            st = os.stat(self.root)
        except OSError as exc:
            raise SourceError(f"source root {os.fsdecode(self.root)} is not accessible: "
                              f"{exc.strerror}") from exc
        if not stat.S_ISDIR(st.st_mode):
            raise SourceError(f"source root {os.fsdecode(self.root)} is not a directory")

    def walk(self) -> Iterator[Entry]:
        """Every directory and regular file below the root, root excluded.

        Breadth-first; each directory's entries sorted by name bytes (SPEC §6.1 with
        scanConcurrency 1). Memory holds one directory listing plus the queue of
        directories still to list, never the whole tree.

        Raises:
            SourceError: the root is missing, or a directory cannot be listed and
                skip_inaccessible is off (the message names the directory).
        """
        self.check_root()
        queue: deque[bytes] = deque([b""])
        while queue:
            rel = queue.popleft()
            absdir = os.path.join(self.root, rel) if rel else self.root
            try:
                with os.scandir(absdir) as it:
                    names = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                shown = escape_path(rel) or "/"
                if self.skip_inaccessible:
                    logger.warning("skipping unreadable directory {}: {}", shown, exc.strerror)
                    continue
                raise SourceError(f"cannot list directory {shown}: {exc.strerror}") from exc
            for de in names:
                child = rel + b"/" + de.name if rel else de.name
                try:
                    st = de.stat(follow_symlinks=False)
                except OSError as exc:
                    logger.warning("skipping {}: {}", escape_path(child), exc.strerror)
                    continue
                mode = st.st_mode
                if stat.S_ISDIR(mode):
                    queue.append(child)
                    yield Entry(escape_path(child), True)
                elif stat.S_ISREG(mode):
                    yield Entry(escape_path(child), False, st.st_size, st.st_mtime_ns)
                elif stat.S_ISLNK(mode):
                    logger.warning("skipping symbolic link {} (links are not followed)",
                                   escape_path(child))
                else:
                    logger.warning("skipping {}: not a regular file or directory",
                                   escape_path(child))

    def stat(self, path: str) -> Stat:
        """Size and mtime of a regular file (symlinks not followed).

        Raises:
            FileNotFoundError / PermissionError / OSError: as the filesystem says.
            SourceError: the path is no longer a regular file.
        """
        st = os.stat(self._abs(path), follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(f"{path} is no longer a regular file")
        return Stat(st.st_size, st.st_mtime_ns)

    def open(self, path: str, offset: int = 0) -> BinaryIO:
        """An unbuffered binary reader positioned at `offset` (never follows a symlink)."""
        # O_NONBLOCK: a FIFO swapped in since the scan must not block the open (the
        # fstat below then rejects it); it changes nothing for a regular file.
        fd = os.open(self._abs(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise SourceError(f"{path} is no longer a regular file")
            f = os.fdopen(fd, "rb", buffering=0)
        except BaseException:
            os.close(fd)
            raise
        if offset:
            f.seek(offset)
        return f  # type: ignore[return-value]


def source_for(storage_type: str, path: str, client_config: dict) -> LocalSource:
    """The source implementation for a storage row (only `local` for now)."""
    if storage_type not in ("local", ""):
        raise SourceError(f"storage type {storage_type!r} is not supported yet (only local)")
    return LocalSource(path, skip_inaccessible=skip_inaccessible(client_config))


def skip_inaccessible(client_config: dict) -> bool:
    """Whether the storage's client config asks to skip unreadable files."""
    for key in ("skip_inaccessible", "skipInaccessibleFile", "skip_inaccessible_files"):
        value = client_config.get(key)
        if value is not None:
            return value is True or str(value).lower() in ("1", "true", "yes")
    return False
