"""Which cache folders and files are imagecache's own (pure rules).

imagecache deletes a file only if it wrote it: a rendition-layout name with an id of this
data folder, inside a cache folder that carries this data folder's marker, on the same
device (DESIGN.md, invariant 6). This module holds the marker's form and the decisions;
the filesystem and the log are read by the callers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from domain.ids import collection_id, is_layout_dir, parse_rendition_relpath, partial_target

MARKER_NAME = ".imagecache-folder"
MARKER_MAX_BYTES = 4096
_MARKER_KIND = "imagecache cache folder"

EntryKind = Literal["file", "dir", "symlink", "mount", "other"]
EntryClass = Literal["marker", "layout_dir", "rendition", "partial", "foreign"]
Identity = tuple[int, int]  # (st_dev, st_ino) of a folder


@dataclass(frozen=True)
class Marker:
    """What imagecache writes into each cache folder it adds: whose folder this is."""

    folder_id: str
    installation_id: str

    def text(self) -> str:
        """The marker file's content (JSON, with a line for a person who opens it)."""
        body = {
            "kind": _MARKER_KIND,
            "version": 1,
            "folder_id": self.folder_id,
            "installation_id": self.installation_id,
            "note": "imagecache keeps cache images and thumbnails here and deletes only files"
            " it wrote; keep nothing else in this folder, and do not copy this file",
        }
        return json.dumps(body, indent=1) + "\n"


def parse_marker(data: bytes) -> Marker | None:
    """The marker a file holds; None for anything that is not one imagecache wrote."""
    if len(data) > MARKER_MAX_BYTES:
        return None
    try:
        body = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("kind") != _MARKER_KIND:
        return None
    fid, iid = body.get("folder_id"), body.get("installation_id")
    if not isinstance(fid, str) or not isinstance(iid, str) or not fid or not iid:
        return None
    return Marker(fid, iid)


def folder_id_of(path: str) -> str:
    """The id of the cache folder at an absolute path (as `folders add` gives it)."""
    return collection_id(path)


def classify_entry(relpath: str, kind: EntryKind) -> EntryClass:
    """What an entry of a cache folder is by its name and type alone.

    `rendition` and `partial` are ours only if the log also knows the id (the caller
    checks); a link, a mount point or any other type is never ours."""
    if kind == "file":
        if relpath == MARKER_NAME:
            return "marker"
        if parse_rendition_relpath(relpath):
            return "rendition"
        if partial_target(relpath):
            return "partial"
    elif kind == "dir" and is_layout_dir(relpath):
        return "layout_dir"
    return "foreign"


@dataclass(frozen=True)
class LeftAlone:
    """A cache folder a maintenance task did not touch, why, and what to do."""

    folder_id: str
    path: str
    reason: str
    message: str
    hint: str

    def as_dict(self) -> dict[str, Any]:
        """The report's form of it."""
        return {
            "id": self.folder_id,
            "path": self.path,
            "reason": self.reason,
            "message": self.message,
            "hint": self.hint,
        }

    def line(self) -> str:
        """One line for a log or a terminal."""
        return f"cache folder {self.path} left alone: {self.message} ({self.hint})"


def left_alone(fid: str, path: str, reason: str, **facts: object) -> LeftAlone:
    """A LeftAlone for one of the reasons below, with its message and hint filled in."""
    message, hint = _REASONS[reason]
    values = {"path": path, "fid": fid, **facts}
    return LeftAlone(fid, path, reason, message.format(**values), hint.format(**values))


_READD = "`imagecache folders add {path}`"
_REASONS: dict[str, tuple[str, str]] = {
    "unknown": (
        "the event log never added cache folder {fid} at this path: the folder statistics"
        " disagree with the log",
        "nothing there was touched; run `imagecache replay rebuild folder_stats`",
    ),
    "overlaps": (
        "it overlaps {what}: pictures there would be taken for orphans",
        "keep the library and the cache folders apart: take the root out of"
        " IMAGECACHE_LIBRARY_ROOTS (or remove the collection), or add a cache folder of its"
        " own with `imagecache folders add`",
    ),
    "missing": (
        "it is not there, or not a folder (a disk that is not mounted?)",
        "mount or restore it; if it is gone for good, create it empty, run " + _READD + ","
        " then `imagecache repair`",
    ),
    "replaced": (
        "another directory is at its path now (device or inode changed: moved and replaced,"
        " or reached through another mount)",
        "put the cache folder back; if this is the same folder (restored, or its disk"
        " mounted elsewhere), run " + _READD + " to check and mark it again",
    ),
    "no_marker": (
        f"its imagecache marker ({MARKER_NAME}) is missing",
        "if it is this cache folder, run " + _READD + ": it checks that imagecache wrote"
        " everything in it, and marks it again",
    ),
    "foreign_marker": (
        "it carries the marker of another cache folder or imagecache installation",
        "it belongs to another data folder (IMAGECACHE_DATA); give this one a folder of its own",
    ),
    "not_ours": (
        "it was added before markers existed and holds {count} entries imagecache did not"
        " write (files, folders or links)",
        "move them out of the folder, then run " + _READD,
    ),
}


Action = Literal["trust", "record", "adopt"]


@dataclass(frozen=True)
class HostMark:
    """One host's record of the directory it found at a cache folder's path."""

    host: str
    identity: Identity


def judge_folder(
    fid: str, path: str, *, added: bool, overlap: str | None, identity: Identity | None,
    marker: Marker | None, marker_present: bool, installation: str, host: str,
    marks: Sequence[HostMark],
) -> Action | LeftAlone:  # fmt: skip
    """Whether maintenance may touch a cache folder, from what the log, the settings and the
    disk say now (never from the read models alone).

    `trust`: yes. `record`: yes, once this host's view of it (`identity`) is recorded (the
    marker is ours and this host never saw the folder). `adopt`: a folder added before
    markers existed; yes once every entry in it proves to be ours and it is marked.
    `added`: the log added folder `fid` at exactly `path`; `marks`: every recorded mark,
    oldest first; `marker_present`: a file is at the marker's name (`marker`: None when it
    is not a valid one)."""
    if not added or folder_id_of(path) != fid:
        return left_alone(fid, path, "unknown")
    if overlap is not None:
        return left_alone(fid, path, "overlaps", what=overlap)
    if identity is None:
        return left_alone(fid, path, "missing")
    ours = marker is not None and marker == Marker(fid, installation)
    if marker_present and not ours:
        return left_alone(fid, path, "foreign_marker")
    if not marks:
        return "adopt"
    if not ours:
        return left_alone(fid, path, "no_marker")
    seen = [m.identity for m in marks if m.host == host]
    if not seen:
        return "record"
    return "trust" if seen[-1] == identity else left_alone(fid, path, "replaced")
