"""Private folders and files: the data folder's state, which no other user may read.

The data folder is 0700 and what imagecache keeps in it 0600. Older versions made it with the
default umask (0755 / 0644), so every start takes group and other permissions off what it
finds, and says so once when that mattered: when the folder itself was open to others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("imagecache")

FOLDER_MODE = 0o700
FILE_MODE = 0o600
OTHERS = 0o077  # group and other permissions: what a private entry must not have


def _tighten_one(path: Path, st: os.stat_result) -> bool:
    mode = stat.S_IMODE(st.st_mode)
    # A symlink's own mode means nothing (Linux cannot even change it); where it points
    # may be anyone's.
    if stat.S_ISLNK(st.st_mode) or not mode & OTHERS:
        return False
    os.chmod(path, mode & ~OTHERS)
    return True


def make_private_folder(path: Path) -> None:
    """Create `path` (mode 0700), or take group and other permissions off it and its files.

    Raises OSError when it cannot be created or changed (not this user's)."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    st = path.stat()
    was = stat.S_IMODE(st.st_mode)
    opened = _tighten_one(path, st)
    with os.scandir(path) as entries:
        for entry in entries:
            # Files only: the folders in it (the database, cache folders, the demo library)
            # are private by this one, and a cache folder may be large.
            if entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):  # replaced meanwhile
                    _tighten_one(Path(entry.path), entry.stat(follow_symlinks=False))
    if opened:
        # Only then could another user have read anything in it: say so, once.
        log.warning(
            "the data folder %s was open to other users (mode %o): it is private now"
            " (0700, its files 0600)",
            path, was,
        )  # fmt: skip


def tighten_tree(root: Path) -> int:
    """Take group and other permissions off `root` and everything under it (symlinks are
    not followed); how many entries were changed. Nothing happens when `root` is missing."""
    if not root.exists():
        return 0
    changed = int(_tighten_one(root, root.lstat()))
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            entry = Path(folder) / name
            with contextlib.suppress(FileNotFoundError):  # a file WiredTiger just replaced
                changed += _tighten_one(entry, entry.lstat())
    return changed


def open_private(path: Path, flags: int) -> int:
    """`os.open` of `path` that creates it 0600, and makes an existing one 0600 too."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & OTHERS:
            os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically; the file is 0600 from its first byte."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # left by a process of this pid that was killed
    _write_new(tmp, data)
    tmp.replace(path)


def create_private(path: Path, data: bytes) -> bool:
    """Make `path` hold `data` (0600) unless it exists: False when another process made it
    first. Never seen half written: written aside, then linked into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    _write_new(tmp, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True
