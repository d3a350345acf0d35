"""Library roots and collections on disk: what is a collection, what is an image, safe paths.

A collection is a folder that holds images directly, or one ZIP/CBZ archive.
Paths outside the library roots, symlinks that leave their collection, symlink loops and
archive members with absolute or `..` names are refused. What a scan accepted is opened
again for reading without following any link below the library root, and only while it
is still what the scan found (size and mtime): see `actors.reading`.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import stat
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO

from actors.archives import ArchiveCache
from actors.nofollow import LinkFound, open_below
from domain.errors import (
    InvalidInput,
    PathOutsideRoots,
    RenderError,
    SourceMissing,
    TransientIOError,
    foreign_text,
)

log = logging.getLogger("imagecache.sources")

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".tif", ".tiff", ".bmp",
     ".heic", ".heif", ".avif"}
)  # fmt: skip
ARCHIVE_EXTENSIONS = frozenset({".zip", ".cbz"})
IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})
MAX_SOURCE_BYTES = 800_000_000  # 8 bytes a pixel of the default 100 MP limit: see settings
RESCAN = "scan the collection again (`imagecache collections scan`)"
ARCHIVES = ArchiveCache()  # this process's open archives, shared by its threads


@dataclass(frozen=True)
class Member:
    """A file inside a collection: its path there, size and mtime."""

    path: str
    size: int
    mtime: float
    supported: bool
    refused: str = ""  # why this member is not read at all (it escapes its collection, ...)


@dataclass(frozen=True)
class SourceRef:
    """One image to read: its collection, its path there, and what the scan found (size and
    mtime; None: not compared). `root` is the library root: no link below it is followed."""

    collection: str
    source: str  # "folder" | "archive"
    member: str
    root: str = ""
    size: int | None = None
    mtime: float | None = None


def resolve_under_roots(path: str | os.PathLike[str], roots: Sequence[str]) -> tuple[Path, Path]:
    """The real path and the root it lies under; refuse anything outside the roots, a path
    that does not exist and a symbolic link loop."""
    raw = Path(path).expanduser()
    real = _real(raw)
    for root in roots:
        try:
            real_root = Path(root).expanduser().resolve(strict=True)
        except (OSError, RuntimeError):
            continue  # a root that is gone (or a loop) holds nothing
        if real == real_root or real_root in real.parents:
            return real, real_root
    raise PathOutsideRoots(f"{raw} is outside the library roots")


def _real(raw: Path) -> Path:
    try:
        return raw.resolve(strict=True)
    except FileNotFoundError:
        raise InvalidInput(f"{raw} does not exist", hint="check the path and try again") from None
    except RuntimeError:  # Python 3.11 says "Symlink loop" so; later ones raise ELOOP
        raise _loop(raw) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _loop(raw) from None
        raise InvalidInput(f"{raw} cannot be read: {exc.strerror}") from None


def _loop(raw: Path) -> InvalidInput:
    return InvalidInput(
        f"{raw} is a symbolic link loop", hint="remove the link or point it at a real folder"
    )


def is_image_name(name: str) -> bool:
    """Whether a file name has the extension of a picture format imagecache reads."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def discover(root: Path) -> Iterator[tuple[Path, str]]:
    """Every collection under a root: (path, "folder" | "archive"); symlinks are not followed
    (a link, a loop among them, is at most a member its folder's scan refuses)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not _ignored(d))
        here = Path(dirpath)
        if any(is_image_name(f) for f in filenames if not _ignored(f)):
            yield here, "folder"
        for name in sorted(filenames):
            full = here / name
            if Path(name).suffix.lower() in ARCHIVE_EXTENSIONS and not full.is_symlink():
                yield full, "archive"


def safe_member_name(name: str) -> bool:
    """An archive member name that stays inside the archive: relative, no `..`, no drive."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name:
        return False
    return ".." not in PurePosixPath(name).parts


def list_members(path: Path, source: str, root: str = "") -> Iterator[Member]:
    """The files of a collection (not recursive for folders), images marked supported. Opened
    from `root` without following links: a collection swapped for a link is not read."""
    if source == "archive":
        yield from _archive_members(path, root)
        return
    anchor, parts = anchor_of(str(path), root)
    try:
        fd = open_below(anchor, parts, directory=True)
    except FileNotFoundError as exc:
        raise SourceMissing(f"collection folder {path} is gone") from exc
    except OSError as exc:
        raise refusal(exc, "") from None
    try:
        with os.scandir(fd) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        for entry in entries:
            if _ignored(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone between the listing and the look
            if stat.S_ISLNK(st.st_mode):
                refused, target = _linked(fd, str(path), entry.name)
                if target is None:
                    log.warning("refused %s/%s: %s", path, entry.name, refused)
                    yield Member(entry.name, 0, 0.0, False, refused)
                    continue
                st = target
            if not stat.S_ISREG(st.st_mode):
                continue
            name = entry.name
            if Path(name).suffix.lower() in ARCHIVE_EXTENSIONS:
                continue  # an archive is a collection of its own
            yield Member(name, st.st_size, st.st_mtime, is_image_name(name))
    finally:
        os.close(fd)


def _linked(dir_fd: int, folder: str, name: str) -> tuple[str, os.stat_result | None]:
    """A symbolic link in a folder collection: why it is refused (and None), or ("", what it
    points to). Only a link to something inside the collection is followed, and only that
    one link: the target is opened as `open_member` opens it, following no other."""
    try:
        text = os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return "an unreadable symbolic link", None
    inside = link_target(folder, name, text)
    if inside is None:
        return "a symlink that leaves its collection", None
    try:
        fd = open_below(dir_fd, inside, directory=False)
    except LinkFound:
        try:
            os.stat(name, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "a symbolic link loop", None
        return "a symlink to another symlink (only one link is followed)", None
    except FileNotFoundError:
        return "a symlink to nothing (its target is gone)", None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            return "a symlink through a file", None
        return f"a symlink whose target cannot be read ({exc.strerror})", None
    try:
        return "", os.fstat(fd)
    finally:
        os.close(fd)


def link_target(folder: str, name: str, text: str) -> list[str] | None:
    """Where the link `name` in `folder`, which reads `text`, points, as names below
    `folder`; None when outside it. By its text first; else by the path the system resolves
    (an absolute link through another name of the same folder). The caller then opens those
    names with no link followed, so a link changed meanwhile cannot lead outside."""
    base = posixpath.normpath(folder).rstrip("/") + "/"
    for target in (
        posixpath.normpath(posixpath.join(folder, text)),
        os.path.realpath(posixpath.join(folder, name)),
    ):
        if target.startswith(base):
            return target[len(base) :].split("/")
    return None


def anchor_of(collection: str, root: str) -> tuple[str, list[str]]:
    """The folder to open a collection from (its library root, trusted as it is), and the
    names below it that lead to the collection; without a root, its parent folder."""
    coll = PurePosixPath(collection)
    if root:
        base = PurePosixPath(root)
        if coll == base or base in coll.parents:
            return str(base), list(coll.relative_to(base).parts)
    return str(coll.parent), [coll.name]


def _archive_members(path: Path, root: str) -> Iterator[Member]:
    file, _identity = open_archive_file(str(path), root, "")
    try:
        with file:
            infos = zipfile.ZipFile(file).infolist()
    except Exception as exc:  # zipfile raises much more than BadZipFile on a damaged directory
        raise InvalidInput(f"{path} is not a readable ZIP archive: {foreign_text(exc)}") from exc
    for info in sorted(infos, key=lambda i: i.filename):
        if info.is_dir() or _ignored(PurePosixPath(info.filename).name):
            continue
        if not safe_member_name(info.filename):
            log.warning("refused member %r of %s: absolute or '..' name", info.filename, path)
            yield Member(info.filename, 0, 0.0, False, "an absolute or '..' name")
            continue
        name = info.filename
        yield Member(name, info.file_size, member_mtime(info), is_image_name(name))


def member_mtime(info: zipfile.ZipInfo) -> float:
    """A member's mtime as a scan records it (local time; 0 for a date no calendar has)."""
    try:
        return datetime(*info.date_time).timestamp()
    except (ValueError, OverflowError, OSError):
        return 0.0


def open_archive_file(path: str, root: str, hint: str) -> tuple[IO[bytes], tuple[int, ...]]:
    """The archive file, opened without following links below the root, and its identity
    (device, inode, size, mtime); a RenderError that ends with `hint` when it cannot be."""
    anchor, parts = anchor_of(path, root)
    try:
        fd = open_below(anchor, parts)
    except OSError as exc:
        raise refusal(exc, hint) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise SourceMissing(f"{path} is not a regular file" + (f"; {hint}" if hint else ""))
    return os.fdopen(fd, "rb"), (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def refusal(exc: OSError, hint: str = RESCAN) -> RenderError:
    """An open that failed, as the RenderError that says what it found (and what to do)."""
    what = exc.filename or "the source"
    then = f"; {hint}" if hint else ""
    if isinstance(exc, LinkFound) or exc.errno == errno.ELOOP:
        return SourceMissing(f"{what} is a symbolic link now, not followed{then}")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return SourceMissing(f"{what} is gone{then}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return SourceMissing(f"permission denied reading {what}")
    if exc.errno == errno.EINVAL:
        return SourceMissing(f"refused name {what!r}")
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return TransientIOError(f"read failed ({code}: {exc.strerror}) {what}")
