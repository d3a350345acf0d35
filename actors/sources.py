"""Library roots and collections on disk: what is a collection, what is an image, safe paths.

A collection is a folder that holds images directly, or one ZIP/CBZ archive.
Paths outside the library roots, symlinks that leave them, and archive
members with absolute or `..` names are refused.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from domain.errors import InvalidInput, PathOutsideRoots, SourceMissing, TransientIOError

log = logging.getLogger("imagecache.sources")

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".tif", ".tiff", ".bmp",
     ".heic", ".heif", ".avif"}
)  # fmt: skip
ARCHIVE_EXTENSIONS = frozenset({".zip", ".cbz"})
IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})


@dataclass(frozen=True)
class Member:
    """A file inside a collection: its path there, size and mtime."""

    path: str
    size: int
    mtime: float
    supported: bool
    refused: str = ""  # why this member is not read at all (it escapes its collection)


def resolve_under_roots(path: str | os.PathLike[str], roots: Sequence[str]) -> tuple[Path, Path]:
    """The real path and the root it lies under; refuse anything outside the roots."""
    raw = Path(path).expanduser()
    if not raw.exists():
        raise InvalidInput(f"{raw} does not exist", hint="check the path and try again")
    real = raw.resolve()
    for root in roots:
        real_root = Path(root).expanduser().resolve()
        if real == real_root or real_root in real.parents:
            return real, real_root
    raise PathOutsideRoots(f"{raw} is outside the library roots")


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def discover(root: Path) -> Iterator[tuple[Path, str]]:
    """Every collection under a root: (path, "folder" | "archive"); symlinks are not followed."""
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


def list_members(path: Path, source: str) -> Iterator[Member]:
    """The files of a collection (not recursive for folders), images marked supported."""
    if source == "archive":
        yield from _archive_members(path)
        return
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except FileNotFoundError as exc:
        raise SourceMissing(f"collection folder {path} is gone") from exc
    for entry in entries:
        if _ignored(entry.name):
            continue
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            target = Path(entry.path).resolve()
            if path.resolve() not in target.parents:
                log.warning("refused %s: a symlink that leaves its collection", entry.path)
                yield Member(entry.name, 0, 0.0, False, "a symlink that leaves its collection")
                continue
            st = entry.stat()
        if not stat.S_ISREG(st.st_mode):
            continue
        name = entry.name
        if Path(name).suffix.lower() in ARCHIVE_EXTENSIONS:
            continue  # an archive is a collection of its own
        yield Member(name, st.st_size, st.st_mtime, is_image_name(name))


def _archive_members(path: Path) -> Iterator[Member]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except FileNotFoundError as exc:
        raise SourceMissing(f"archive {path} is gone") from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"{path} is not a readable ZIP archive: {exc}") from exc
    for info in sorted(infos, key=lambda i: i.filename):
        if info.is_dir() or _ignored(PurePosixPath(info.filename).name):
            continue
        if not safe_member_name(info.filename):
            log.warning("refused member %r of %s: absolute or '..' name", info.filename, path)
            yield Member(info.filename, 0, 0.0, False, "an absolute or '..' name")
            continue
        mtime = datetime(*info.date_time).timestamp()
        yield Member(info.filename, info.file_size, mtime, is_image_name(info.filename))


def member_digest(collection_path: str, source: str, member: str) -> str:
    """A content hash of one image (BLAKE2b, 128 bits), read in 1 MiB blocks."""
    digest = hashlib.blake2b(digest_size=16)
    with open_member(collection_path, source, member) as fp:
        while block := fp.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def open_member(collection_path: str, source: str, member: str) -> BinaryIO:
    """Open one image of a collection for reading; SourceMissing when it is gone."""
    try:
        if source == "archive":
            if not safe_member_name(member):
                raise SourceMissing(f"refused archive member {member!r}")
            with zipfile.ZipFile(collection_path) as zf:
                return io.BytesIO(zf.read(member))
        full = Path(collection_path) / member
        if "/" in member or member in ("", ".", ".."):
            raise SourceMissing(f"refused member name {member!r}")
        return open(full, "rb")
    except (FileNotFoundError, KeyError) as exc:
        raise SourceMissing(f"{member} is gone from {collection_path}") from exc
    except zipfile.BadZipFile as exc:
        raise SourceMissing(f"archive {collection_path} is no longer readable: {exc}") from exc
    except OSError as exc:
        raise TransientIOError(f"reading {member} from {collection_path}: {exc}") from exc
