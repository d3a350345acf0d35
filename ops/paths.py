"""Paths a user gives (on the command line or to the API), checked once where they come in.

Below this point the use cases call `Path.exists()`, `resolve()`, `os.walk` and
hash the path's UTF-8 bytes into ids. A NUL byte, a name longer than a file
system allows, bytes that are not UTF-8 or a folder we may not look into make
those raise ValueError, OSError or UnicodeEncodeError deep down, as a trace.
`checked_path` refuses such a path up front with an error that says what is
wrong with it and what to do, and lets everything else through unchanged.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from domain.errors import InvalidInput

NAME_MAX = 255  # bytes in one file or folder name (ext4, XFS, btrfs, tmpfs, ...)
PATH_MAX = 4096  # bytes in a whole path (Linux)
# What a missing path gives: the use case decides whether that is an error (a cache folder
# is created) or not, so these pass; anything else (no permission, a loop) says so here.
MISSING = (errno.ENOENT, errno.ENOTDIR)


def _shown(name: str, limit: int = 40) -> str:
    return repr(name if len(name) <= limit else name[:limit] + "...")


def checked_path(raw: str | os.PathLike[str], *, absolute: bool = False) -> Path:
    """`raw` as a Path, or InvalidInput saying why no file system could take it.

    Refused: an empty path, a NUL character, text that is not UTF-8 (a name made of other
    bytes, passed on by the command line), a name over 255 bytes, a path over 4096 bytes,
    a path we are not allowed to look at; with `absolute`, a relative path too.
    """
    text = os.fspath(raw)
    if not text.strip():
        raise InvalidInput("the path is empty", hint="give the path of a folder")
    if "\x00" in text:
        raise InvalidInput(
            "the path contains a NUL character (\\x00), which no file name can hold",
            hint="give the path without it",
        )
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            "the path is not valid UTF-8 (a name in it is made of other bytes)",
            hint="imagecache keeps paths as UTF-8 text: rename the file or folder",
        ) from None
    if absolute and not text.startswith("/"):
        raise InvalidInput(
            f"{text} is not an absolute path", hint="give the full path, starting with /"
        )
    if len(encoded) > PATH_MAX:
        raise InvalidInput(
            f"the path is {len(encoded)} bytes long; a path has at most {PATH_MAX}",
            hint="give a shorter path",
        )
    for name in text.split("/"):
        size = len(name.encode("utf-8"))
        if size > NAME_MAX:
            raise InvalidInput(
                f"the name {_shown(name)} in the path is {size} bytes long;"
                f" a file or folder name has at most {NAME_MAX}",
                hint="check the path",
            )
    path = Path(text)
    try:
        os.stat(path.expanduser())
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidInput(
                f"{text} is a symbolic link loop", hint="remove the link or point it elsewhere"
            ) from None
        if exc.errno not in MISSING:
            raise InvalidInput(
                f"cannot look at {text}: {exc.strerror or exc}",
                hint="check the path and its permissions",
            ) from None
    return path
