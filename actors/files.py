"""Rendition files on local disk (and an in-memory twin), written atomically.

What is read or deleted under a cache folder is reached without following a link and
without leaving the folder's device: each step opens the next folder relative to the one
before (O_NOFOLLOW), so a link or a mount put anywhere on the way is never gone through,
even while the walk runs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from domain.errors import ImageCacheError, NoSpace, TransientIOError
from domain.ids import TMP_SUFFIX, is_layout_dir, partial_name
from domain.ownership import MARKER_MAX_BYTES, MARKER_NAME, EntryKind, Identity

__all__ = ["TMP_SUFFIX", "Entry", "LocalFileStore", "MemoryFileStore", "NotOurs"]

_HOST = socket.gethostname().replace(".", "_")
_WRITER = f"{_HOST}.{os.getpid()}"
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_OCTAL = re.compile(r"\\([0-7]{3})")


class NotOurs(ImageCacheError):
    """A file was not deleted: it is not a regular file of this cache folder's directory
    (a link, another mount, or another directory at the folder's path)."""


class Entry(NamedTuple):
    """One entry under a cache folder, as lstat sees it."""

    relpath: str
    kind: EntryKind
    size: int
    mtime: float
    ctime: float


def partial_owner(name: str) -> tuple[str, int] | None:
    """(host, pid) of the writer of a temporary file, from its name; None if not one of ours."""
    if not name.endswith(TMP_SUFFIX):
        return None
    parts = name[: -len(TMP_SUFFIX)].split(".")
    try:
        return parts[-3], int(parts[-2])
    except (IndexError, ValueError):
        return None


def is_orphaned_partial(name: str) -> bool:
    """A temporary file whose writer on this host is gone: safe to delete."""
    owner = partial_owner(name)
    if owner is None or owner[0] != _HOST:
        return False
    try:
        os.kill(owner[1], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def read_mount_points() -> frozenset[str]:
    """Every mount point of this process's view (Linux: /proc/self/mountinfo), so that a
    bind mount of the same filesystem, which keeps the device number, is seen too."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return frozenset()  # elsewhere the device number alone tells mounts apart
    found = set()
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4:
            # Spaces, tabs, newlines and backslashes in paths are written as octal escapes.
            found.add(_OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4]))
    return frozenset(found)


def _identity(st: os.stat_result) -> Identity:
    return st.st_dev, st.st_ino


class LocalFileStore:
    """Files under cache-folder roots; a temporary name, fsync-free rename, never half a file.

    `mount_points` is the seam for tests that cannot mount: it names the mount points."""

    def __init__(self, mount_points: Callable[[], frozenset[str]] = read_mount_points) -> None:
        self._mount_points = mount_points

    def write_atomic(self, root: str, relpath: str, data: bytes) -> int:
        """Write `relpath` under `root` through a temporary file and a rename; the size of
        the file it replaced, or -1.

        The folders on the way are opened without following links, and the temporary
        file is created new (never opened through a link someone put at its name), so a
        write never lands, truncates or replaces anything outside the cache folder."""
        parts = relpath.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise TransientIOError(f"{relpath!r} is not a path inside a cache folder")
        name = parts[-1]
        tmp = partial_name(name, _WRITER, threading.get_ident())
        fd: int | None = None
        try:
            os.makedirs(root, exist_ok=True)
            fd = os.open(root, _DIR)
            for part in parts[:-1]:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
                sub = os.open(part, _DIR | os.O_NOFOLLOW, dir_fd=fd)  # ELOOP: a link
                os.close(fd)
                fd = sub
            self._write_new(fd, os.path.join(root, *parts[:-1], tmp), tmp, data)
            try:
                replaced = os.stat(name, dir_fd=fd, follow_symlinks=False).st_size
            except FileNotFoundError:
                replaced = -1
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
            return replaced
        except OSError as exc:
            if fd is not None:
                self._drop_own(fd, tmp)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(f"cache folder {root} is out of space") from exc
            raise TransientIOError(f"writing {relpath} in {root} failed: {exc.strerror}") from exc
        finally:
            if fd is not None:
                os.close(fd)

    @staticmethod
    def _drop_own(fd: int, tmp: str) -> None:
        """Remove this writer's temporary file (a regular file at its own name), if there."""
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.stat(tmp, dir_fd=fd, follow_symlinks=False).st_mode):
                os.unlink(tmp, dir_fd=fd)

    @staticmethod
    def _write_new(fd: int, path: str, tmp: str, data: bytes) -> None:
        """Create `tmp` in directory `fd` (never through a link) and write `data` into it.

        A regular file already there is a leftover of this very writer (host, pid and
        thread are in the name): it is replaced; anything else is in the way."""

        def create(_path: str, flags: int) -> int:
            flags |= os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(tmp, flags, 0o666, dir_fd=fd)

        for _attempt in range(2):
            try:
                with open(path, "wb", opener=create) as f:
                    f.write(data)
                return
            except FileExistsError:
                st = os.stat(tmp, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    raise
                os.unlink(tmp, dir_fd=fd)
        raise FileExistsError(errno.EEXIST, "a temporary file is in the way", tmp)

    def size(self, root: str, relpath: str) -> int:
        try:
            return (Path(root) / relpath).stat().st_size
        except FileNotFoundError:
            return -1

    def identity(self, root: str) -> Identity | None:
        """(device, inode) of the directory at `root` now; None when no directory is there."""
        try:
            st = os.stat(root)
        except OSError:
            return None
        return _identity(st) if stat.S_ISDIR(st.st_mode) else None

    def remove(self, root: str, relpath: str, *, identity: Identity | None = None) -> int:
        """Delete one regular file; its size, or -1 when nothing is there.

        NotOurs, and nothing deleted, when the path goes through a link or onto another
        device, names anything but a regular file, or (with `identity`) the directory at
        `root` is not that one."""
        parts = relpath.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise NotOurs(f"{relpath!r} is not a path inside a cache folder")
        mounts = self._mount_points()
        try:
            fd = self._open_root(root, identity)
        except FileNotFoundError:
            return -1
        try:
            dev = os.fstat(fd).st_dev
            base = os.path.realpath(root)
            for n, part in enumerate(parts[:-1]):
                try:
                    sub = os.open(part, _DIR | os.O_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    return -1
                except OSError as exc:  # ELOOP (a link) or ENOTDIR
                    raise NotOurs(f"{'/'.join(parts[: n + 1])} is not a folder") from exc
                os.close(fd)
                fd = sub
                here = os.path.join(base, *parts[: n + 1])
                if os.fstat(fd).st_dev != dev or here in mounts:
                    raise NotOurs(f"{'/'.join(parts[: n + 1])} is another mount")
            try:
                st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return -1
            if not stat.S_ISREG(st.st_mode) or st.st_dev != dev:
                raise NotOurs(f"{relpath} is not a regular file")
            os.unlink(parts[-1], dir_fd=fd)
            return st.st_size
        finally:
            os.close(fd)

    def _open_root(self, root: str, identity: Identity | None) -> int:
        """A descriptor of the directory at `root` (a link there is the operator's own
        choice of place); NotOurs when it is not the directory `identity` names."""
        try:
            fd = os.open(root, _DIR)
        except NotADirectoryError:
            if identity is not None:
                raise NotOurs(f"{root} is not a folder") from None
            raise FileNotFoundError(root) from None
        except FileNotFoundError:
            if identity is not None:
                raise NotOurs(f"{root} is not there") from None
            raise
        if identity is not None and _identity(os.fstat(fd)) != identity:
            os.close(fd)
            raise NotOurs(f"{root} is another directory than the cache folder that was added")
        return fd

    def entries(self, root: str, *, identity: Identity | None = None) -> Iterator[Entry]:
        """Every entry of a cache folder, by lstat: files, links, mounts, other folders.

        Only the layout's folders (`cache/ab/cd`) are entered: anything else cannot hold a
        rendition, so it is listed and never looked into. A link is never followed, a mount
        point never entered. Nothing when no directory is at `root` (NotOurs instead when
        `identity` is given, or when the directory there is not that one)."""
        try:
            fd = self._open_root(root, identity)
        except FileNotFoundError:
            return
        try:
            top = os.fstat(fd)
            base = os.path.realpath(root)
            yield from self._below(fd, "", top.st_dev, base, self._mount_points())
        finally:
            os.close(fd)

    def _below(
        self, fd: int, prefix: str, dev: int, base: str, mounts: frozenset[str]
    ) -> Iterator[Entry]:
        with os.scandir(fd) as found:
            names = sorted(e.name for e in found)
        for name in names:
            rel = prefix + name
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            kind: EntryKind
            if stat.S_ISLNK(st.st_mode):
                kind = "symlink"
            elif stat.S_ISDIR(st.st_mode):
                mount = st.st_dev != dev or os.path.join(base, rel) in mounts
                kind = "mount" if mount else "dir"
            elif stat.S_ISREG(st.st_mode):
                kind = "file"
            else:
                kind = "other"
            yield Entry(rel, kind, st.st_size if kind == "file" else 0, st.st_mtime, st.st_ctime)
            if kind != "dir" or not is_layout_dir(rel):
                continue
            try:
                sub = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                continue  # gone, or replaced by a link since it was listed
            try:
                if _identity(os.fstat(sub)) == _identity(st):
                    yield from self._below(sub, rel + "/", dev, base, mounts)
            finally:
                os.close(sub)

    def partials(
        self, root: str, *, identity: Identity | None = None
    ) -> Iterator[tuple[str, int, float]]:
        """Temporary files under root (relpath, size, mtime): writes that did not finish."""
        for e in self.entries(root, identity=identity):
            if e.kind == "file" and e.relpath.endswith(TMP_SUFFIX):
                yield e.relpath, e.size, e.mtime

    def walk(
        self, root: str, *, identity: Identity | None = None
    ) -> Iterator[tuple[str, int, float]]:
        """Regular files in the layout's folders (relpath, size, mtime), but temporary files
        and the marker; links and other mounts are never followed."""
        for e in self.entries(root, identity=identity):
            if e.kind == "file" and not e.relpath.endswith(TMP_SUFFIX) and e.relpath != MARKER_NAME:
                yield e.relpath, e.size, e.mtime

    def read_marker(self, root: str, *, identity: Identity | None = None) -> tuple[bool, bytes]:
        """Whether something is at the marker's name, and its bytes when it is a regular
        file no larger than a marker (else b""); a link there is not followed."""
        fd = self._open_root(root, identity)
        try:
            try:
                mfd = os.open(MARKER_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
            except FileNotFoundError:
                return False, b""
            except OSError:
                return True, b""  # a link, or nothing this user may read
            try:
                st = os.fstat(mfd)
                if not stat.S_ISREG(st.st_mode) or st.st_size > MARKER_MAX_BYTES:
                    return True, b""
                return True, os.read(mfd, MARKER_MAX_BYTES + 1)
            finally:
                os.close(mfd)
        finally:
            os.close(fd)

    def write_marker(self, root: str, text: str, *, identity: Identity | None = None) -> None:
        """Put the marker into the directory at `root`, whole or not at all."""
        fd = self._open_root(root, identity)
        tmp = partial_name(MARKER_NAME, _WRITER, threading.get_ident())
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            out = os.open(tmp, flags, 0o644, dir_fd=fd)
            try:
                os.write(out, text.encode())
            finally:
                os.close(out)
            os.replace(tmp, MARKER_NAME, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)
            raise
        finally:
            os.close(fd)

    def free_bytes(self, root: str) -> int:
        path = Path(root)
        while not path.exists() and path != path.parent:
            path = path.parent
        return shutil.disk_usage(path).free


class MemoryFileStore:
    """Same promises as LocalFileStore, in memory, for unit tests."""

    def __init__(self, free: int = 1 << 40) -> None:
        self.files: dict[tuple[str, str], tuple[bytes, float]] = {}
        self._free = free
        self._lock = threading.Lock()

    def write_atomic(self, root: str, relpath: str, data: bytes) -> int:
        with self._lock:
            old = self.files.get((root, relpath))
            grow = len(data) - (len(old[0]) if old else 0)
            if grow > self._free:
                raise NoSpace(f"cache folder {root} is out of space")
            self._free -= grow
            self.files[(root, relpath)] = (data, 0.0)
            return len(old[0]) if old else -1

    def size(self, root: str, relpath: str) -> int:
        found = self.files.get((root, relpath))
        return len(found[0]) if found else -1

    def remove(self, root: str, relpath: str) -> int:
        with self._lock:
            found = self.files.pop((root, relpath), None)
            if found is None:
                return -1
            self._free += len(found[0])
            return len(found[0])

    def walk(self, root: str) -> Iterator[tuple[str, int, float]]:
        for (r, rel), (data, mtime) in sorted(self.files.items()):
            if r == root:
                yield rel, len(data), mtime

    def free_bytes(self, root: str) -> int:
        return self._free

    def partials(self, root: str) -> Iterator[tuple[str, int, float]]:
        return iter(())  # writes in memory are never half done
