"""Use cases shared by the CLI and the API: roots, collections, folders, bulk operations."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pymongo.errors

from actors import plan, scan
from actors.sources import resolve_under_roots
from domain import events as ev
from domain.errors import (
    ImageCacheError,
    InvalidInput,
    PathOutsideRoots,
    UnknownCollection,
    UnknownFolder,
)
from domain.ownership import folder_id_of
from domain.specs import kinds_from_choice
from domain.views import job_status
from ops import control, ownership
from ops.bootstrap import App
from ops.paths import checked_path

log = logging.getLogger("imagecache.library")


def library_roots(app: App) -> list[str]:
    """Roots from settings plus those added with `up PATH` (recorded in the log)."""
    roots = list(app.settings.library_roots)
    after = 0
    while batch := app.events.stream("library", after=after):
        roots.extend(e.event.path for e in batch if isinstance(e.event, ev.LibraryRootAdded))
        after = batch[-1].seq
    return roots


def add_root(app: App, path: str | Path) -> str:
    """Allow collections under `path`; refuse what is not a readable folder, and a folder
    that is, holds or lies inside a cache folder."""
    real = checked_path(path).expanduser()
    if not real.exists():
        raise InvalidInput(f"{real} does not exist", hint="give the folder of your library")
    if not real.is_dir():
        raise InvalidInput(f"{real} is not a folder", hint="give the folder of your library")
    try:
        next(iter(real.iterdir()), None)
    except PermissionError:
        raise InvalidInput(f"{real} is not readable", hint="check its permissions") from None
    resolved = str(real.resolve())
    app.projector.catch_up()
    _check_apart_from_folders(app, Path(resolved), "the library")
    app.events.append(ev.LibraryRootAdded(resolved))
    return resolved


def _cache_folders(app: App) -> list[tuple[str, Path]]:
    """Every cache folder in use, resolved (one removed is checked when added again)."""
    docs = app.read.folder_docs()
    return [(f"the cache folder {d['path']}", Path(d["path"]).resolve()) for d in docs]


def _check_apart_from_folders(app: App, path: Path, what: str) -> None:
    """Refuse a library root or collection that is, holds or lies in a cache folder: its
    pictures would be taken for the folder's orphans, and its cache files for pictures."""
    folder = ownership.overlap(path, _cache_folders(app))
    if folder is not None:
        raise InvalidInput(
            f"{what} {path} overlaps {folder}: its cache files would be scanned as pictures,"
            " and pictures in it taken for cache files",
            hint="keep the library and the cache folders apart (IMAGECACHE_CACHE_DIR,"
            " IMAGECACHE_LIBRARY_ROOTS, or `imagecache folders add` another folder)",
        )


def root_problems(app: App) -> list[str]:
    """Library roots (from IMAGECACHE_LIBRARY_ROOTS or `up PATH`) that overlap a cache
    folder, one line each with what to do: collections under them are refused, and
    maintenance leaves the cache folder alone."""
    app.projector.catch_up()
    folders = _cache_folders(app)
    problems = []
    for root in dict.fromkeys(library_roots(app)):
        folder = ownership.overlap(root, folders)
        if folder is not None:
            problems.append(
                f"library root {root} overlaps {folder}: no collection is registered under it,"
                " and maintenance leaves that cache folder alone (keep the library and the"
                " cache folders apart: correct IMAGECACHE_LIBRARY_ROOTS or IMAGECACHE_CACHE_DIR)"
            )
    return problems


def add_collections(app: App, path: str | Path, *, revive: bool = False) -> list[str]:
    """Register the collection at `path` (or every collection under it, but those removed;
    with `revive`, a removed collection at exactly `path` is registered again). Refused when
    it, or every root it lies under, overlaps a cache folder."""
    checked_path(path)
    app.projector.catch_up()
    roots = _roots_apart(app, path, library_roots(app))
    return scan.register(
        app.events, path, roots, removed=app.read.removed_collections(), revive=revive,
    )  # fmt: skip


def _roots_apart(app: App, path: str | Path, roots: Sequence[str]) -> list[str]:
    """The roots apart from every cache folder, once `path` is known to be apart from them
    and to lie under one of them (InvalidInput, saying which overlap, otherwise)."""
    real, root = resolve_under_roots(path, roots)  # PathOutsideRoots when under none
    _check_apart_from_folders(app, real, "the collection")
    folders = _cache_folders(app)
    apart = [r for r in roots if ownership.overlap(r, folders) is None]
    try:
        resolve_under_roots(real, apart)
    except PathOutsideRoots:
        _check_apart_from_folders(app, root, "the library root")
    return apart


def remove_collection(app: App, cid: str) -> dict[str, Any]:
    """Stop caching a collection: cancel its jobs, remove its images (their renditions are
    then orphans that cleanup deletes), and leave it out of scans under its root."""
    with app.publishing:  # no plan or pick-up of this collection in between, here
        return _remove_collection(app, cid)


def _remove_collection(app: App, cid: str) -> dict[str, Any]:
    app.projector.catch_up()
    doc = app.read.collection(cid)
    if doc is None:
        raise UnknownCollection(f"no collection {cid}")
    cancelled = []
    for job in app.read.jobs_of_collection(cid):
        if job_status(job) not in ("finished", "cancelled"):
            app.events.append(ev.JobCancelled(job["_id"], uuid.uuid4().hex, "collection removed"))
            cancelled.append(job["_id"])
    docs = app.read.images_of(cid)
    supported = [d["_id"] for d in docs if d.get("supported", True)]
    unsupported = [d["_id"] for d in docs if not d.get("supported", True)]
    removal = uuid.uuid4().hex
    app.events.append_many(
        [
            ev.CollectionScanned(
                cid, removal, 0, 1, removed=supported, unsupported_removed=unsupported
            ),
            ev.CollectionRemoved(cid, removal, str(doc["path"]), len(supported)),
        ]
    )
    app.projector.catch_up()
    return {
        "id": cid,
        "path": doc["path"],
        "images": len(supported),
        "unsupported": len(unsupported),
        "cancelled_jobs": cancelled,
    }


def scan_collections(
    app: App, ids: Sequence[str], *, content_hash: bool = False
) -> list[scan.ScanResult]:
    """Scan collections; projections are caught up so the next scan compares against this one."""
    app.projector.catch_up()
    results = [scan.scan(app.events, app.read, cid, content_hash=content_hash) for cid in ids]
    app.projector.catch_up()
    return results


def scan_problems(results: Sequence[scan.ScanResult]) -> list[str]:
    """What a scan could not read, one line each: whole collections, then members."""
    lines = [f"collection {r.collection_id}: {r.error}" for r in results if r.error]
    lines += [f"collection {r.collection_id}: {line}" for r in results for line in r.refused]
    return lines


def refresh(app: App) -> dict[str, Any]:
    """Keep up with the library, as `up` does without waiting or serving (the scheduler's
    `scan` task): register collections new under the roots, scan every collection, and
    plan what is missing or stale (never what a job still has queued)."""
    app.projector.catch_up()
    known = {c["_id"] for c in app.read.collections()}
    roots = library_roots(app)
    problems: list[str] = []
    removed = app.read.removed_collections()
    for root in dict.fromkeys(roots):
        try:
            # A root that overlaps a cache folder is not scanned (root_problems says so).
            _check_apart_from_folders(app, Path(root).expanduser().resolve(), "the library root")
            apart = _roots_apart(app, root, roots)
            scan.register(app.events, root, apart, known=known, removed=removed)
        except ImageCacheError as exc:
            problems.append(f"library root {root}: {exc}")
    app.projector.catch_up()
    ids = [c["_id"] for c in app.read.collections()]
    results = scan_collections(app, ids)
    report: dict[str, Any] = {
        "collections": len(ids),
        "new_collections": len(set(ids) - known),
        **{k: sum(getattr(r, k) for r in results) for k in ("added", "changed", "removed")},
        "jobs": [],
        "to_process": 0,
        "queued": 0,
        "problems": problems + scan_problems(results),
    }
    if ids:
        bulk = regenerate(app, ids)
        report.update(
            jobs=[j.job_id for j in bulk.jobs],
            to_process=sum(j.to_process for j in bulk.jobs),
            queued=bulk.queued,
        )
    for line in report["problems"]:
        log.warning("scan: %s", line)
    return report


def folder_id(path: str) -> str:
    """The id of the cache folder at an absolute path."""
    return folder_id_of(path)


def add_folder(
    app: App, path: str | Path, capacity: int = 0, priority: int = 0, *, parents: bool = False
) -> str:
    """Add a cache folder, and mark it as this data folder's; adding it again changes
    nothing but marks it again (a folder added before markers existed, or restored).

    A missing folder is created when its parent exists (all the way up with `parents`, for
    the default folder in the data folder), so a typo does not make a tree somewhere. It
    must be writable, apart from every library root, and hold nothing imagecache did not
    write, at any depth: cache files inside a library would be scanned as pictures, and
    anything else in a cache folder would mix with its files."""
    real = checked_path(path).expanduser().absolute()
    _check_capacity(capacity)
    fid = folder_id(str(real))
    _check_apart(app, real, fid)
    try:
        real.mkdir(parents=parents, exist_ok=True)
    except FileExistsError:
        raise InvalidInput(f"{real} is a file, not a folder") from None
    except FileNotFoundError:
        raise InvalidInput(
            f"cannot create cache folder {real}: {real.parent} does not exist",
            hint="check the path, or create the folder first",
        ) from None
    except OSError as exc:
        raise InvalidInput(f"cannot create cache folder {real}: {exc.strerror}") from exc
    if not os.access(real, os.W_OK | os.X_OK):
        raise InvalidInput(f"cache folder {real} is not writable", hint="check its permissions")
    identity = ownership.claim(app, fid, real)
    view = app.read.folder(fid)
    # A folder removed earlier is added again under a key of its own (the first add's key
    # is taken: appending it again would change nothing).
    again = uuid.uuid4().hex if view is not None and view["removed"] else ""
    app.events.append(ev.CacheFolderAdded(fid, str(real), capacity, priority, again))
    ownership.mark(app, fid, str(real), identity, write=True)
    return fid


def _check_apart(app: App, real: Path, fid: str) -> None:
    """A cache folder shares no files with the library, nor with another cache folder:
    cleanup deletes what no rendition references, so a folder that overlaps either would
    lose pictures, or the other folder's renditions."""
    resolved = real.resolve()
    app.projector.catch_up()
    others: list[tuple[str, str]] = [("the library root", r) for r in library_roots(app)]
    others += [("the collection", str(c["path"])) for c in app.read.collections()]
    others += [
        ("the cache folder", str(f["path"])) for f in app.read.folder_docs() if f["_id"] != fid
    ]
    for what, other in others:
        if ownership.overlap(resolved, [(what, Path(other).resolve())]):
            raise InvalidInput(
                f"cache folder {real} overlaps {what} {other}",
                hint="give each cache folder a folder of its own, apart from the library",
            )


def _check_capacity(capacity: int) -> None:
    if capacity < 0:
        raise InvalidInput("capacity must be 0 (no limit but the disk) or a number of bytes")


def change_folder(
    app: App, fid: str, capacity: int | None = None, priority: int | None = None
) -> dict[str, Any]:
    """Change a cache folder's capacity and/or priority (None keeps it); return its view."""
    app.projector.catch_up()
    view = app.read.folder(fid)
    if view is None or view["removed"]:
        raise UnknownFolder(f"no cache folder {fid}")
    capacity = view["capacity_bytes"] if capacity is None else capacity
    priority = view["priority"] if priority is None else priority
    _check_capacity(capacity)
    app.events.append(ev.CacheFolderChanged(fid, uuid.uuid4().hex, capacity, priority))
    app.projector.catch_up()
    return app.read.folder(fid) or view


def ensure_default_folder(app: App) -> None:
    """With no cache folder configured, use the settings' cache folder."""
    app.projector.catch_up()
    if not app.read.folder_docs():
        add_folder(app, app.settings.cache_dir, app.settings.cache_capacity, parents=True)
        app.projector.catch_up()


def regenerate(
    app: App, ids: Sequence[str] = (), *, everything: bool = False, kind: str = "both",
    force: bool = False,
) -> plan.BulkResult:  # fmt: skip
    """Plan and publish a bulk operation over the given collections (or all)."""
    if not ids and not everything:
        raise InvalidInput("name collections with --collection ID, or use --all")
    # Workers need somewhere to write: with no cache folder yet, the configured default one
    # (as `up` makes it), not a job that pauses at once because "every folder is full".
    ensure_default_folder(app)
    with app.publishing:  # one plan at a time here, and no pick-up pass in between
        return plan.request_bulk(
            app.events, app.read, app.actors.publish, app.settings.specs,
            collection_ids=ids, everything=everything, kinds=kinds_from_choice(kind),
            force=force, batch_size=app.settings.batch_size,
            quarantine_after=app.settings.quarantine_after,
            queued=control.queued_lookup(app),
        )  # fmt: skip


def wait_for(
    app: App, job_ids: Sequence[str], *, drive_projector: bool = True, timeout: float | None = None,
    progress: Any = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Wait until the jobs are finished (or cancelled/paused); return their final views."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            if drive_projector:
                app.projector.run_once()
            docs = [app.read.job_doc(j) or {"_id": j, "total": 1} for j in job_ids]
        except pymongo.errors.ConnectionFailure as exc:
            log.warning("database unreachable while waiting (%s); retrying", exc)
            time.sleep(1.0)
            continue
        if progress is not None:
            progress(docs)
        if all(job_status(d) in ("finished", "cancelled", "paused") for d in docs):
            return [v for j in job_ids if (v := app.read.job(j)) is not None]
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"jobs not finished after {timeout}s")
        time.sleep(0.25)  # each pass drives the projector: a dozen round trips to the database


# -- used by the web API ------------------------------------------------------------


class FolderInUse(InvalidInput):
    """A cache folder still holds renditions, so removing it would lose them."""

    hint = "move or clean up its files first (cleanup, or lower its capacity), then remove it"


def remove_folder(app: App, fid: str) -> dict[str, Any]:
    """Retire a cache folder that holds no files; refuse (FolderInUse) while it holds any."""
    app.projector.catch_up()
    view = app.read.folder(fid)
    if view is None:
        raise UnknownFolder(f"no cache folder {fid}")
    if view["files"] > 0:
        raise FolderInUse(
            f"cache folder {fid} still holds {view['files']} files"
            f" of {view['collections']} collections"
        )
    app.events.append(ev.CacheFolderRemoved(fid, uuid.uuid4().hex))
    app.projector.catch_up()
    return app.read.folder(fid) or view


def job_failures(
    app: App, job_id: str, *, error_class: str | None = None, offset: int = 0, limit: int = 100
) -> dict[str, Any]:
    """A job's failed outcomes (oldest first), optionally of one class, with image paths."""
    from domain.errors import UnknownJob

    view = app.read.job(job_id)
    if view is None:
        raise UnknownJob(f"no job {job_id}")
    failed: list[ev.RenditionFailed] = []
    after = 0
    while batch := app.events.stream(f"job:{job_id}", after=after, limit=10_000):
        failed.extend(
            s.event
            for s in batch
            if isinstance(s.event, ev.RenditionFailed)
            and (error_class is None or s.event.error_class == error_class)
        )
        after = batch[-1].seq
    page = failed[offset : offset + limit]
    images = app.read.images_by_ids({f.image_id for f in page})
    rows = [
        {
            "image_id": f.image_id,
            "path": images.get(f.image_id, {}).get("path"),
            "kind": f.kind,
            "error_class": f.error_class,
            "message": f.message,
            "attempts": f.attempts,
        }
        for f in page
    ]
    return {
        "job_id": job_id,
        "failed_by_class": view["failed_by_class"],
        "total": len(failed),
        "offset": offset,
        "limit": limit,
        "failures": rows,
    }


def image_rows(
    app: App,
    docs: Sequence[dict[str, Any]],
    *,
    renditions: Mapping[tuple[str, str], dict[str, Any]] | None = None,
    folders: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Images (read-model documents) with each rendition's status: current, stale or missing.

    `renditions` saves a lookup when the caller has them (a whole collection); with
    `folders` (folder id -> path) each rendition also names its file: for the CLI only,
    the API never shows a filesystem path."""
    from domain.planning import is_current
    from projections.readmodels import source_image

    specs = app.settings.specs
    if renditions is None:
        renditions = app.read.renditions_for(
            (d["_id"], k) for d in docs if d.get("supported", True) for k in specs
        )
    rows: list[dict[str, Any]] = []
    for doc in docs:
        row: dict[str, Any] = {
            "id": doc["_id"],
            "path": doc["path"],
            "supported": bool(doc.get("supported", True)),
            "renditions": {},
        }
        if row["supported"]:
            image = source_image(doc)
            for kind, spec in specs.items():
                r = renditions.get((image.image_id, kind))
                if r is None:
                    row["renditions"][kind] = {"status": "missing"}
                    continue
                row["renditions"][kind] = {
                    "status": "current" if is_current(r, spec, image) else "stale",
                    "bytes": int(r["bytes"]),
                    "width": int(r.get("width", 0)),
                    "height": int(r.get("height", 0)),
                }
                if folders is not None:
                    folder = folders.get(r["folder_id"], "?")
                    row["renditions"][kind]["file"] = str(Path(folder) / r["path"])
        rows.append(row)
    return rows
