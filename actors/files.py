"""Rendition files on local disk (and an in-memory twin), written atomically."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from domain.errors import NoSpace, TransientIOError

TMP_SUFFIX = ".tmp-imagecache"
_HOST = socket.gethostname().replace(".", "_")
_WRITER = f"{_HOST}.{os.getpid()}"


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


class LocalFileStore:
    """Files under cache-folder roots; a temporary name, fsync-free rename, never half a file."""

    def write_atomic(self, root: str, relpath: str, data: bytes) -> int:
        target = Path(root) / relpath
        tmp = target.with_name(f".{target.name}.{_WRITER}.{threading.get_ident()}{TMP_SUFFIX}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
            try:
                replaced = target.stat().st_size
            except FileNotFoundError:
                replaced = -1
            os.replace(tmp, target)
            return replaced
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(f"cache folder {root} is out of space") from exc
            raise TransientIOError(f"writing {relpath} in {root} failed: {exc.strerror}") from exc

    def size(self, root: str, relpath: str) -> int:
        try:
            return (Path(root) / relpath).stat().st_size
        except FileNotFoundError:
            return -1

    def remove(self, root: str, relpath: str) -> int:
        path = Path(root) / relpath
        try:
            size = path.stat().st_size
            path.unlink()
            return size
        except FileNotFoundError:
            return -1

    def partials(self, root: str) -> Iterator[tuple[str, int, float]]:
        """Temporary files under root (relpath, size, mtime): writes that did not finish."""
        return self._walk(root, partial=True)

    def walk(self, root: str) -> Iterator[tuple[str, int, float]]:
        return self._walk(root, partial=False)

    def _walk(self, root: str, *, partial: bool) -> Iterator[tuple[str, int, float]]:
        base = Path(root)
        for dirpath, _dirs, names in os.walk(base):
            for name in names:
                if name.endswith(TMP_SUFFIX) != partial:
                    continue
                full = Path(dirpath) / name
                try:
                    st = full.stat()
                except FileNotFoundError:
                    continue
                yield str(full.relative_to(base)), st.st_size, st.st_mtime

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
