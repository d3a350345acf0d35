"""Read one image of a collection, as the scan found it, or fail with a RenderError.

A file is opened without following any link below its library root (`nofollow`), compared
with what the scan recorded (size and mtime: a change means the image as planned is gone),
and streamed within the size limit; an archive member is checked before it is read, from
an archive this process keeps open (`archives`). Whatever goes wrong is a RenderError with
a message that says what to do.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, cast

from actors.archives import BoundedReader, UnreadableArchive, check_member, over_limit, zip_error
from actors.nofollow import LinkFound, open_below
from actors.render import unexpected
from actors.sources import (
    ARCHIVES,
    MAX_SOURCE_BYTES,
    RESCAN,
    SourceRef,
    anchor_of,
    link_target,
    member_mtime,
    open_archive_file,
    refusal,
    safe_member_name,
)
from domain.errors import RenderError, SourceMissing, TransientIOError


def member_digest(ref: SourceRef, max_bytes: int = MAX_SOURCE_BYTES) -> str:
    """A content hash of one image (BLAKE2b, 128 bits), read in 1 MiB blocks; a RenderError
    (the one its render would fail with) when it cannot be read."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open_member(ref, max_bytes=max_bytes) as fp:
            while block := fp.read(1 << 20):
                digest.update(block)
    except RenderError:
        raise
    except MemoryError as exc:
        raise TransientIOError("ran out of memory while hashing") from exc
    except OSError as exc:
        if exc.errno is None:
            raise unexpected(exc, "hashing") from exc
        raise refusal(exc) from exc
    except Exception as exc:
        raise unexpected(exc, "hashing") from exc
    return digest.hexdigest()


@contextmanager
def open_member(ref: SourceRef, *, max_bytes: int = MAX_SOURCE_BYTES) -> Iterator[BinaryIO]:
    """One image of a collection, open for reading and seekable, streamed within `max_bytes`.

    Opened without following any link below the library root, and only while it is what the
    scan found: a link, a changed size or mtime, a file that is gone are SourceMissing, saying
    to scan again. Every error is a RenderError. A ZIP member's CRC-32 is checked when the
    reading done in the `with` block succeeds (the rest of the member is read for it)."""
    if ref.source == "archive":
        opened = _archive_member(ref, max_bytes)
    else:
        opened = _folder_member(ref, max_bytes)
    with opened as reader:
        yield cast(BinaryIO, reader)  # a BufferedIOBase, which typeshed does not count as one
        reader.finish()


@contextmanager
def _folder_member(ref: SourceRef, max_bytes: int) -> Iterator[BoundedReader]:
    if "/" in ref.member or ref.member in ("", ".", ".."):
        raise SourceMissing(f"refused member name {ref.member!r}")
    anchor, parts = anchor_of(ref.collection, ref.root)
    try:
        try:
            fd = open_below(anchor, [*parts, ref.member])
        except LinkFound as exc:
            if exc.filename != "/".join([*parts, ref.member]):
                raise  # a folder on the way, not the member itself
            fd = _open_linked(ref, anchor, parts)
    except OSError as exc:
        raise refusal(exc) from None
    file = os.fdopen(fd, "rb")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SourceMissing(f"{ref.member} is no longer a regular file; {RESCAN}")
        _check_found(ref, st.st_size, st.st_mtime)
        if st.st_size > max_bytes:
            raise over_limit(st.st_size, max_bytes, "file holds")
    except BaseException:
        file.close()
        raise
    with BoundedReader(file, max_bytes) as reader:
        yield reader


def _open_linked(ref: SourceRef, anchor: str, parts: list[str]) -> int:
    """The member is a link (as the scan found, or swapped in since): follow it only as the
    scan does, to a file inside the collection, with no other link on the way."""
    text = os.readlink(posixpath.join(ref.collection, ref.member))
    inside = link_target(ref.collection, ref.member, text)
    if inside is None:
        raise SourceMissing(
            f"{ref.member} is a symbolic link that leaves its collection, not followed; {RESCAN}"
        )
    return open_below(anchor, [*parts, *inside])


@contextmanager
def _archive_member(ref: SourceRef, max_bytes: int) -> Iterator[BoundedReader]:
    if not safe_member_name(ref.member):
        raise SourceMissing(f"refused archive member {ref.member!r}")
    file, identity = open_archive_file(ref.collection, ref.root, RESCAN)
    try:
        with ARCHIVES.archive(ref.collection, file, identity) as archive:
            try:
                info = archive.getinfo(ref.member)
            except KeyError:
                raise SourceMissing(f"{ref.member} is no longer in the archive; {RESCAN}") from None
            _check_found(ref, info.file_size, member_mtime(info), zipped=True)
            check_member(info, max_bytes)
            try:
                raw = archive.open(info)
            except Exception as exc:
                raise _zip_open_error(exc) from exc
            with BoundedReader(raw, max_bytes) as reader:
                yield reader
    except UnreadableArchive as exc:
        raise SourceMissing(f"the archive is no longer readable ({exc}); {RESCAN}") from exc


def _check_found(ref: SourceRef, size: int, mtime: float, *, zipped: bool = False) -> None:
    """The file is still what the scan found, or SourceMissing saying to scan again."""
    changed = []
    if ref.size is not None and size != ref.size:
        changed.append(f"{ref.size} bytes at the scan, {size} now")
    if ref.mtime is not None and not _same_time(ref.mtime, mtime, zipped):
        changed.append("modified since")
    if changed:
        raise SourceMissing(f"{ref.member} changed since the scan ({', '.join(changed)}); {RESCAN}")


def _same_time(scanned: float, now: float, zipped: bool) -> bool:
    if scanned == now:
        return True
    # A ZIP stores local wall-clock time without a zone: a worker in another time zone than
    # the scanner reads the same member a whole number of quarter hours apart.
    apart = abs(scanned - now)
    return zipped and apart <= 14 * 3600 and apart % 900 == 0


def _zip_open_error(exc: Exception) -> RenderError:
    error = zip_error(exc)
    if error is not None:
        return error
    if isinstance(exc, OSError) and exc.errno is not None:
        return refusal(exc)
    return unexpected(exc, "opening the archive member")
