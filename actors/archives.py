"""ZIP/CBZ archives read safely: each opened once per process, members streamed within a limit.

An archive's central directory is parsed once per process and kept (`ArchiveCache`), keyed by
path and file identity, so a replaced archive is read again; parsing it for every member cost
0.66 s a member for 100,000 members. A member is checked before it is read (encrypted, a
compression method zipfile lacks, a declared size over the limit) and then streamed through a
`BoundedReader`, never read whole: a small archive can hold a member of many gigabytes.

What a member can raise, as RenderErrors with a one-line message:

    encrypted (flag bit 0, or AES: method 99)                  UnsupportedFormat
    Deflate64, implode, zstd, ... (methods zipfile lacks)      UnsupportedFormat
    declares, or holds, more bytes than the limit              SourceTooLarge
    corrupt deflate data, bad CRC-32, cut short, bad header    CorruptImage
"""

from __future__ import annotations

import io
import threading
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, NoReturn

from domain.errors import (
    CorruptImage,
    RenderError,
    SourceTooLarge,
    UnsupportedFormat,
    foreign_text,
)

# Compression methods zipfile reads (bzip2 and LZMA only when Python has their modules).
_READABLE = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
try:
    import bz2  # noqa: F401

    _READABLE.add(zipfile.ZIP_BZIP2)
except ImportError:  # pragma: no cover - Python built without bz2
    pass
try:
    import lzma  # noqa: F401

    _READABLE.add(zipfile.ZIP_LZMA)
except ImportError:  # pragma: no cover - Python built without lzma
    pass
_METHODS = {1: "Shrink", 6: "Implode", 9: "Deflate64", 10: "PKWARE DCL Implode", 93: "Zstandard",
            95: "XZ", 96: "JPEG", 97: "WavPack", 98: "PPMd"}  # fmt: skip
_AES = 99  # WinZip AES encryption: the real method is in an extra field
KEEP_OPEN = 4  # archives a process keeps open
KEEP_ENTRIES = 300_000  # members their directories may hold together (~53 MB per 100,000)


def size_text(n: int) -> str:
    """A byte count for a message, exact, with its order of magnitude: 4,194,305 bytes (4 MiB)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n:,} bytes ({n / scale:.3g} {unit})"
    return f"{n:,} bytes"


def over_limit(size: int, limit: int, what: str) -> SourceTooLarge:
    """The error for a source of `size` bytes over `limit`."""
    return SourceTooLarge(
        f"{what} {size_text(size)}, over the limit of {size_text(limit)}"
        " (IMAGECACHE_MAX_SOURCE_BYTES)"
    )


class UnreadableArchive(Exception):
    """The archive's central directory cannot be parsed (any exception zipfile raised)."""


def check_member(info: zipfile.ZipInfo, limit: int) -> None:
    """Refuse, before reading a byte, a member zipfile cannot read or that is too large."""
    if info.flag_bits & 0x1 or info.compress_type == _AES:
        raise UnsupportedFormat(
            "archive member is encrypted: imagecache reads no password-protected archives;"
            " repack it without a password"
        )
    if info.compress_type not in _READABLE:
        name = _METHODS.get(info.compress_type, "unknown")
        raise UnsupportedFormat(
            f"archive member uses compression method {info.compress_type} ({name}), which"
            " imagecache cannot read; repack the archive with plain deflate"
        )
    if info.file_size > limit:
        raise over_limit(info.file_size, limit, "archive member declares")


def zip_error(exc: BaseException) -> RenderError | None:
    """What an exception raised while reading a member means, or None for a read error of
    the disk (an OSError with an errno) or anything else, which callers classify."""
    if isinstance(exc, RenderError):
        return exc
    if isinstance(exc, zipfile.BadZipFile):
        return CorruptImage(f"archive member is damaged: {foreign_text(exc)}")
    if isinstance(exc, zlib.error):
        return CorruptImage(f"archive member's compressed data is damaged: {foreign_text(exc)}")
    if isinstance(exc, EOFError):
        return CorruptImage("archive member is cut short: its compressed data ends early")
    if isinstance(exc, NotImplementedError):
        return UnsupportedFormat(f"archive member cannot be read: {foreign_text(exc)}")
    if isinstance(exc, RuntimeError) and "encrypted" in str(exc):
        return UnsupportedFormat("archive member is encrypted: repack it without a password")
    return None


class BoundedReader(io.BufferedIOBase):
    """A seekable, read-only view of `raw` that refuses to read past `limit` bytes: a file
    that grew since it was checked, or a member that inflates to more than it declared.
    Errors of a ZIP member come out as RenderErrors (see `zip_error`)."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        super().__init__()
        self._raw = raw
        self._limit = limit

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes (all that is left: -1); SourceTooLarge past the limit."""
        left = self._limit - self._raw.tell()
        # Never more than one byte past the limit, even for "all of it": a file that grew
        # since it was checked must not be read whole to find out.
        want = left + 1 if size is None or size < 0 or size > left else size
        try:
            data = self._raw.read(want)
        except Exception as exc:
            _reraise(exc)
        if len(data) > left:
            raise over_limit(self._limit + 1, self._limit, "source holds at least")
        return data

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to `offset` as `raw` does (a ZIP member re-reads from its start to go back)."""
        try:
            return self._raw.seek(offset, whence)
        except Exception as exc:
            _reraise(exc)

    def tell(self) -> int:
        return self._raw.tell()

    def finish(self) -> None:
        """Read what is left, within the limit: a ZIP member's CRC-32 is checked at its end,
        and a decoder that stopped before it never saw a damaged tail."""
        while self.read(1 << 20):
            pass

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


@dataclass
class _Open:
    archive: zipfile.ZipFile
    file: IO[bytes]
    identity: tuple[int, ...]
    entries: int
    users: int = 0
    retired: bool = False

    def close(self) -> None:
        try:
            self.archive.close()
        finally:
            self.file.close()


@dataclass
class ArchiveCache:
    """The open archives of one process, shared by its threads, least recently used first.

    An entry is found by path and kept only while the file there has the same identity
    (device, inode, size, mtime): an archive replaced or rewritten is parsed again. One in
    use is closed only when its last user is done with it."""

    keep: int = KEEP_OPEN
    keep_entries: int = KEEP_ENTRIES
    parsed: int = 0  # central directories read: what the cache exists to keep low
    _open: OrderedDict[str, _Open] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _parsing: dict[str, threading.Lock] = field(default_factory=dict)

    @contextmanager
    def archive(self, path: str, file: IO[bytes], identity: tuple[int, ...]) -> Iterator[Any]:
        """The parsed archive in `file` (opened by the caller, owned by the cache from now
        on: closed when no longer needed); the same one for every member of that file."""
        entry = self._take(path, identity)
        if entry is None:
            entry = self._parse_once(path, file, identity)
        else:
            file.close()
        try:
            yield entry.archive
        finally:
            self._release(entry)

    def forget(self, path: str) -> None:
        """Close the archive at `path` once nobody uses it (a scan that hashed it is done)."""
        with self._lock:
            entry = self._open.pop(path, None)
            if entry is not None:
                self._retire(entry)

    def _take(self, path: str, identity: tuple[int, ...]) -> _Open | None:
        with self._lock:
            entry = self._open.get(path)
            if entry is None:
                return None
            if entry.identity != identity:
                del self._open[path]
                self._retire(entry)
                return None
            entry.users += 1
            self._open.move_to_end(path)
            return entry

    def _parse_once(self, path: str, file: IO[bytes], identity: tuple[int, ...]) -> _Open:
        """Parse a new archive; two threads on it at once: one parses, the other waits."""
        with self._lock:
            parsing = self._parsing.setdefault(path, threading.Lock())
        try:
            with parsing:
                entry = self._take(path, identity)
                if entry is not None:
                    file.close()
                    return entry
                return self._parse(path, file, identity)
        finally:
            with self._lock:
                if self._parsing.get(path) is parsing:
                    del self._parsing[path]

    def _parse(self, path: str, file: IO[bytes], identity: tuple[int, ...]) -> _Open:
        try:
            archive = zipfile.ZipFile(file)
        except Exception as exc:  # zipfile raises much more than BadZipFile on a bad directory
            file.close()
            raise UnreadableArchive(foreign_text(exc)) from exc
        except BaseException:
            file.close()
            raise
        entry = _Open(archive, file, identity, len(archive.filelist), users=1)
        with self._lock:
            self.parsed += 1
            old = self._open.pop(path, None)
            if old is not None:
                self._retire(old)
            self._open[path] = entry
            held = sum(e.entries for e in self._open.values())
            while len(self._open) > 1 and (len(self._open) > self.keep or held > self.keep_entries):
                _, oldest = self._open.popitem(last=False)
                held -= oldest.entries
                self._retire(oldest)
        return entry

    def _release(self, entry: _Open) -> None:
        with self._lock:
            entry.users -= 1
            done = entry.retired and entry.users == 0
        if done:
            entry.close()

    def _retire(self, entry: _Open) -> None:
        """Called with the lock held: close now if unused, else when its last user is done."""
        entry.retired = True
        if entry.users == 0:
            entry.close()


def _reraise(exc: Exception) -> NoReturn:
    error = zip_error(exc)
    if error is None or error is exc:
        raise exc
    raise error from exc
