"""Which cache folders maintenance may touch, and which files in them imagecache wrote.

The read models say which folders there are; they are never trusted on their own. A folder
is touched only when the log added it at that path, it overlaps no library root or
collection, the directory there carries this installation's marker, and it is the
directory this host recorded (device and inode). A file in it is deleted only when its name
has the rendition layout and the log has a `RenditionGenerated` for that folder and path.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.files import NotOurs
from domain import events as ev
from domain.errors import InvalidInput
from domain.ids import parse_rendition_relpath, partial_target
from domain.ownership import (
    HostMark,
    Identity,
    LeftAlone,
    Marker,
    classify_entry,
    judge_folder,
    left_alone,
    parse_marker,
)
from ops.bootstrap import App

log = logging.getLogger("imagecache.ownership")

HOST = socket.gethostname()


def installation_id(app: App) -> str:
    """This data folder's installation id: read from the log, recorded there the first time
    (under a fixed key, so restarts, replays and export/import keep the one id)."""
    found = app.events.by_key(ev.INSTALLATION_KEY)
    if found is None:
        found = app.events.append(ev.InstallationIdentified(uuid.uuid4().hex))
    event = found.event
    assert isinstance(event, ev.InstallationIdentified)
    return event.installation_id


@dataclass(frozen=True)
class Folder:
    """A cache folder maintenance may touch: its statistics and the directory found there."""

    doc: dict[str, Any]
    identity: Identity

    @property
    def id(self) -> str:
        """The folder's id."""
        return str(self.doc["_id"])

    @property
    def path(self) -> str:
        """The folder's path, as the log added it."""
        return str(self.doc["path"])


def folders(app: App, *, quiet: bool = False) -> tuple[list[Folder], list[LeftAlone]]:
    """The cache folders maintenance may touch now, and those it must leave alone (each
    logged as a warning, unless `quiet`)."""
    docs = app.read.folder_docs()
    if not docs:
        return [], []
    installation = installation_id(app)
    places = library_places(app)
    trusted: list[Folder] = []
    alone: list[LeftAlone] = []
    for doc in docs:
        verdict = _judge(app, doc, installation, places)
        if isinstance(verdict, LeftAlone):
            alone.append(verdict)
            if not quiet:
                log.warning("%s", verdict.line())
        else:
            trusted.append(Folder(doc, verdict))
    return trusted, alone


def _judge(
    app: App, doc: dict[str, Any], installation: str, places: list[tuple[str, Path]]
) -> Identity | LeftAlone:
    fid, path = str(doc["_id"]), str(doc["path"])
    identity = app.files.identity(path)
    present, marker = False, None
    if identity is not None:
        try:
            present, data = app.files.read_marker(path, identity=identity)
        except NotOurs:
            return left_alone(fid, path, "replaced")
        marker = parse_marker(data) if present else None
    verdict = judge_folder(
        fid, path,
        added=_added_at(app, fid, path),
        overlap=overlap(path, places), identity=identity, marker=marker,
        marker_present=present, installation=installation, host=HOST,
        marks=_marks(app, fid, installation),
    )  # fmt: skip
    if isinstance(verdict, LeftAlone):
        return verdict
    assert identity is not None
    if verdict == "adopt":
        try:
            count = foreign_entries(app, fid, path, identity)
        except NotOurs:
            return left_alone(fid, path, "replaced")
        if count:
            return left_alone(fid, path, "not_ours", count=count)
        try:
            mark(app, fid, path, identity, write=True)
        except InvalidInput as exc:
            log.warning("%s", exc)
            return left_alone(fid, path, "no_marker")
        log.info("cache folder %s, added before markers: everything in it is ours; marked", path)
    elif verdict == "record":
        mark(app, fid, path, identity, write=False)
    return identity


def _added_at(app: App, fid: str, path: str) -> bool:
    """Whether the log added folder `fid` at `path` (its first add: re-adds keep the path)."""
    found = app.events.by_key(f"folder:{fid}:added")
    event = found.event if found is not None else None
    return isinstance(event, ev.CacheFolderAdded) and event.path == path


def _marks(app: App, fid: str, installation: str) -> list[HostMark]:
    """What each host recorded of folder `fid`, oldest first."""
    marks: list[HostMark] = []
    after = 0
    while batch := app.events.stream(f"folder:{fid}:marks", after=after):
        marks += [
            HostMark(e.host, (e.device, e.inode))
            for s in batch
            if isinstance(e := s.event, ev.CacheFolderMarked) and e.installation_id == installation
        ]
        after = batch[-1].seq
    return marks


def mark(app: App, fid: str, path: str, identity: Identity, *, write: bool) -> None:
    """Record that the directory `identity` at `path` is cache folder `fid` of this
    installation, as this host sees it (with `write`, after putting the marker into it);
    nothing is recorded when this host's last record says so already."""
    installation = installation_id(app)
    if write:
        try:
            app.files.write_marker(path, Marker(fid, installation).text(), identity=identity)
        except (OSError, NotOurs) as exc:
            raise InvalidInput(
                f"cannot write the marker of cache folder {path}: {exc}",
                hint="check that the folder is there and writable, then add it again",
            ) from None
    seen = [m.identity for m in _marks(app, fid, installation) if m.host == HOST]
    if not seen or seen[-1] != identity:
        mark_id = uuid.uuid4().hex
        app.events.append(ev.CacheFolderMarked(fid, mark_id, installation, HOST, path, *identity))


def library_places(app: App) -> list[tuple[str, Path]]:
    """Every library root (settings and log) and collection, resolved, with its name."""
    from ops.library import library_roots  # library adds folders through this module

    places = [(f"the library root {r}", Path(r).resolve()) for r in library_roots(app)]
    collections = app.read.collections()
    places += [(f"the collection {c['path']}", Path(c["path"]).resolve()) for c in collections]
    return places


def overlap(path: str | Path, places: list[tuple[str, Path]]) -> str | None:
    """The first place that `path` is, lies inside, or holds; None when it is apart."""
    resolved = Path(path).resolve()
    for what, place in places:
        if resolved == place or place in resolved.parents or resolved in place.parents:
            return what
    return None


@dataclass(frozen=True)
class Written:
    """The log's proof that imagecache wrote a file: its last `RenditionGenerated`, and
    whether the folder statistics count the file still (no counted deletion since)."""

    event: ev.RenditionGenerated
    counted: bool


def generated_here(app: App, fid: str, relpath: str) -> Written | None:
    """How the log says imagecache wrote `relpath` in folder `fid`; None when it has no
    `RenditionGenerated` of that folder and path: it did not, whatever the read models say."""
    parsed = parse_rendition_relpath(relpath)
    if parsed is None:
        return None
    found: Written | None = None
    for s in app.events.of_image(parsed[1], limit=10_000):
        e = s.event
        if isinstance(e, ev.RenditionGenerated) and e.folder_id == fid and e.path == relpath:
            found = Written(e, True)
        elif (
            isinstance(e, ev.RenditionDeleted) and e.folder_id == fid and e.path == relpath
            and e.counted and found is not None
        ):  # fmt: skip
            found = Written(found.event, False)
    return found


# One lookup of a file in the log's image index costs about as much as reading this many
# events in order (measured on the embedded SecantusDB: 3.1 ms a lookup, 0.21 ms an event).
LOOKUP_COST = 15


def written_files(app: App, fid: str, relpaths: Iterable[str]) -> dict[str, Written]:
    """`generated_here` for many files of one folder: by a lookup each when they are few
    beside the log, else in one pass over the log (a cleanup after a change of format)."""
    wanted = {r for r in relpaths if parse_rendition_relpath(r)}
    head = app.events.head()
    if len(wanted) * LOOKUP_COST < head:
        return {rel: w for rel in wanted if (w := generated_here(app, fid, rel)) is not None}
    found: dict[str, Written] = {}
    for page in range(0, head, 10_000):
        for s in app.events.read(page, 10_000):
            e = s.event
            if isinstance(e, ev.RenditionGenerated) and e.folder_id == fid and e.path in wanted:
                found[e.path] = Written(e, True)
            elif (
                isinstance(e, ev.RenditionDeleted) and e.folder_id == fid and e.counted
                and e.path in found
            ):  # fmt: skip
                found[e.path] = Written(found[e.path].event, False)
    return found


def known_image(app: App, relpath: str) -> bool:
    """Whether a temporary file was to become a rendition of an image this installation's
    log knows (an outcome or deletion of it): only such a partial file is ours."""
    target = partial_target(relpath)
    parsed = parse_rendition_relpath(target) if target else None
    return parsed is not None and bool(app.events.of_image(parsed[1], limit=1))


def foreign_entries(app: App, fid: str, path: str, identity: Identity | None) -> int:
    """How many entries of the folder at `path` imagecache did not write: anything but the
    layout's folders, rendition files this data folder wrote into folder `fid`, temporary
    files of its images, and the marker (whose owner the caller checks).

    A rendition file counts as written when `renditions` references it (the read model
    only saves the log lookups here: every deletion checks the log itself) or the log has
    its `RenditionGenerated`."""
    referenced = {str(d["path"]) for d in app.read.renditions_in(fid)}
    found = app.files.entries(path, identity=identity)
    entries = [(e.relpath, classify_entry(e.relpath, e.kind)) for e in found]
    written = written_files(
        app, fid, (rel for rel, what in entries if what == "rendition" and rel not in referenced)
    )
    count = 0
    for rel, what in entries:
        if what in ("layout_dir", "marker"):
            continue
        if what == "rendition" and (rel in referenced or rel in written):
            continue
        if what == "partial" and known_image(app, rel):
            continue
        count += 1
    return count


def claim(app: App, fid: str, path: Path) -> Identity:
    """Check that a folder about to be added holds nothing imagecache did not write, at any
    depth, and no marker but its own; its identity, or InvalidInput with nothing changed.

    The error gives a count, never names: the API must not list anyone's folder."""
    identity = app.files.identity(str(path))
    if identity is None:
        raise InvalidInput(f"{path} is not a folder")
    present, data = app.files.read_marker(str(path), identity=identity)
    if present and parse_marker(data) != Marker(fid, installation_id(app)):
        raise InvalidInput(
            f"cache folder {path} carries the marker of another cache folder or imagecache"
            " installation",
            hint="it belongs to another data folder (IMAGECACHE_DATA) or was moved here:"
            " give this one a folder of its own",
        )
    count = foreign_entries(app, fid, str(path), identity)
    if count:
        raise InvalidInput(
            f"cache folder {path} already holds files imagecache did not write: {count}"
            " entries (files, folders or links) that are not this data folder's cache files",
            hint="give an empty folder, or one this data folder's imagecache made;"
            " nothing was changed",
        )
    return identity
