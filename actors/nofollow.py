"""Open a file below a trusted folder without following a symbolic link anywhere on the way.

A scan checks where each image lies, but a file, or a folder on its way, can be swapped for a
link to somewhere else (a private file, another disk) between that scan and the render. Opening
one component at a time with O_NOFOLLOW, each relative to the folder opened before it, makes
the check and the open one step: nothing can be swapped in between. The anchor (the library
root the operator chose) is opened as it is, links and all: it is the edge of what we trust.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in for a picture must not hang the open (fstat then refuses it).
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class LinkFound(OSError):
    """A component that the scan saw as a file or folder is a symbolic link: not followed."""


def open_below(anchor: str | int, parts: Sequence[str], *, directory: bool = False) -> int:
    """A read-only descriptor of anchor/parts[0]/.../parts[-1] (a folder with `directory`),
    following no symbolic link below the anchor (a path, or a folder descriptor that stays
    open). Raises LinkFound for a link on the way, and the OSError of the open otherwise;
    either names the relative path of the component that failed."""
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\0" in part:
            raise OSError(errno.EINVAL, "not a plain name", part)
    if isinstance(anchor, int):
        fd = os.dup(anchor)
    else:
        fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for n, part in enumerate(parts):
            last = n == len(parts) - 1
            shown = "/".join(parts[: n + 1])
            flags = _DIR if not last or directory else _FILE
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and _is_link(part, fd)):
                    raise LinkFound(errno.ELOOP, "a symbolic link, not followed", shown) from None
                raise OSError(exc.errno, exc.strerror, shown) from None
            os.close(fd)
            fd = child
        result, fd = fd, -1
        return result
    finally:
        if fd >= 0:
            os.close(fd)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False
