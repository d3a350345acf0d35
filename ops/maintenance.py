"""Maintenance: orphan cleanup, statistics reconciliation, missing-file repair, capacity,
failure alerts and recovery. Every change is an event; each task is also a CLI command.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from actors.files import NotOurs, is_orphaned_partial
from domain import events as ev
from domain.errors import NoSpace, UnknownCollection
from domain.ownership import LeftAlone, classify_entry, left_alone
from domain.planning import choose_folder
from ops import control, library, ownership
from ops.bootstrap import App
from ops.ownership import Folder

log = logging.getLogger("imagecache.maintenance")

DAY = 86_400.0
PARTIAL_MAX_AGE = 3_600.0  # a temporary file this old belongs to no live write, on any host


def _deletion_id(folder_id: str, relpath: str, size: int, mtime: float) -> str:
    raw = f"{folder_id}/{relpath}/{size}/{mtime}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _delete(
    app: App, folder: Folder, relpath: str, size: int, mtime: float, reason: str,
    *, current: dict[str, Any] | None, ctime: float | None = None,
    origin: ownership.Written | None = None,
) -> ev.RenditionDeleted | None:  # fmt: skip
    """Delete one file imagecache wrote, then record it (file first: a crash between leaves
    drift for reconcile, never a deletion recorded for a file still there). None, and
    nothing deleted or recorded, when the log has no `RenditionGenerated` of this folder and
    path (`origin`, looked up when not given), or the path is not a regular file of the
    folder's directory: whatever `current` (a read model) says, it is not ours."""
    origin = origin or ownership.generated_here(app, folder.id, relpath)
    if origin is None:
        log.warning("kept %s in %s: the log has no record that imagecache wrote it",
                    relpath, folder.path)  # fmt: skip
        return None
    if reason != "file_missing":
        try:
            if app.files.remove(folder.path, relpath, identity=folder.identity) < 0:
                return None
        except NotOurs as exc:
            log.warning("kept %s in %s: %s", relpath, folder.path, exc)
            return None
    # A file the log no longer counts (a deletion was recorded for it, and it came back) is
    # counted again if a reconcile measured it: it existed before the last one.
    measured = ctime is not None and ctime <= float(folder.doc.get("last_reconciled_at") or 0)
    written = origin.event
    image, kind = written.image_id, written.kind
    if current is not None:
        image, kind = current["image_id"], current["kind"]
    event = ev.RenditionDeleted(
        image_id=image,
        kind=kind,
        folder_id=folder.id,
        path=relpath,
        bytes=int(current["bytes"]) if current else size,
        reason=reason,
        deletion_id=_deletion_id(folder.id, relpath, size, mtime),
        collection_id=(current or {}).get("collection_id") or written.collection_id,
        was_current=current is not None,
        counted=current is not None or origin.counted or measured,
    )
    app.events.append(event)
    return event


def _left(alone: list[LeftAlone]) -> list[dict[str, Any]]:
    return [a.as_dict() for a in alone]


def remove_partials(app: App, *, all_hosts_older_than: float = PARTIAL_MAX_AGE) -> int:
    """Delete temporary files of writes that can no longer finish; return how many. Only
    in folders maintenance may touch, and only those whose rendition is of an image the log
    knows (see ops.ownership)."""
    now = app.clock.now()
    removed = 0
    trusted, _alone = ownership.folders(app, quiet=True)  # the tasks that report say why
    for folder in trusted:
        try:
            partials = list(app.files.partials(folder.path, identity=folder.identity))
        except NotOurs:
            continue
        for relpath, _size, mtime in partials:
            stale = is_orphaned_partial(Path(relpath).name) or now - mtime > all_hosts_older_than
            if not stale or not ownership.known_image(app, relpath):
                continue
            try:
                if app.files.remove(folder.path, relpath, identity=folder.identity) >= 0:
                    removed += 1
            except NotOurs as exc:
                log.warning("kept %s in %s: %s", relpath, folder.path, exc)
    if removed:
        log.info("removed %d partial files of interrupted writes", removed)
    return removed


def cleanup(app: App, *, dry_run: bool = True, older_than_days: float = 7.0) -> dict[str, Any]:
    """Orphans (files no current rendition references: also what a regenerate with a changed
    spec left at another name) and renditions of removed sources, older than N days.

    Only files imagecache wrote (see ops.ownership): anything else in a cache folder is
    counted as `foreign` and kept, and a folder maintenance may not touch is reported in
    `left_alone`, with what to do, and not looked into.

    The current rendition of an image whose spec changed is never deleted: it is the only
    copy there is to serve until a regenerate replaces it (in place, or at a new name, which
    makes the old file an orphan). It is counted as `stale_kept`, with what to run.
    """
    app.projector.catch_up()
    cutoff = app.clock.now() - older_than_days * DAY
    specs = {k: s.hash for k, s in app.settings.specs.items()}
    removed_sources = app.read.removed_image_ids()
    report: dict[str, Any] = {"dry_run": dry_run, "older_than_days": older_than_days, "folders": []}
    if not dry_run:
        remove_partials(app)
    trusted, alone = ownership.folders(app)
    for folder in trusted:
        referenced = {d["path"]: d for d in app.read.renditions_in(folder.id)}
        found: list[dict[str, Any]] = []
        stale = foreign = 0
        try:
            entries = list(app.files.entries(folder.path, identity=folder.identity))
        except NotOurs:
            alone.append(left_alone(folder.id, folder.path, "replaced"))
            continue
        candidates = []
        for entry in entries:
            what = classify_entry(entry.relpath, entry.kind)
            if what in ("layout_dir", "marker", "partial"):
                continue  # partial files: remove_partials, above
            if what == "foreign":
                foreign += 1
                continue
            current = referenced.get(entry.relpath)
            if current is not None and current["image_id"] not in removed_sources:
                stale += current["spec_hash"] != specs.get(current["kind"])
            elif entry.mtime <= cutoff:
                candidates.append((entry, current))
        written = ownership.written_files(app, folder.id, (e.relpath for e, _ in candidates))
        for entry, current in candidates:
            origin = written.get(entry.relpath)
            if origin is None:
                foreign += 1  # a layout-looking name imagecache never wrote here
                continue
            reason = "orphan" if current is None else "source_removed"
            if not dry_run and not _delete(
                app, folder, entry.relpath, entry.size, entry.mtime, reason, current=current,
                ctime=entry.ctime, origin=origin,
            ):  # fmt: skip
                continue
            found.append(
                {"path": entry.relpath, "bytes": entry.size, "mtime": entry.mtime, "reason": reason}
            )
        if foreign:
            log.warning(
                "cache folder %s holds %d entries imagecache did not write: kept (move them"
                " out of the cache folder)", folder.path, foreign,
            )  # fmt: skip
        report["folders"].append(
            {
                "id": folder.id,
                "path": folder.path,
                "files": len(found),
                "bytes": sum(f["bytes"] for f in found),
                "by_reason": _count(f["reason"] for f in found),
                "stale_kept": stale,
                "sample": found[:50],
                "foreign": foreign,
            }
        )
    report["stale_kept"] = sum(f["stale_kept"] for f in report["folders"])
    if report["stale_kept"]:
        report["hint"] = (
            f"{report['stale_kept']} current renditions were made with another spec than the"
            " configured one; they are kept until `imagecache regenerate` replaces them"
        )
    report["foreign"] = sum(f["foreign"] for f in report["folders"])
    report["left_alone"] = _left(alone)
    app.projector.catch_up()
    return report


def _record_missing(app: App, trusted: list[Folder]) -> int:
    """Record, file by file, every current rendition whose file is gone (in folders that
    maintenance may touch: a folder that is away or replaced has not lost its files)."""
    missing = 0
    for folder in trusted:
        for doc in list(app.read.renditions_in(folder.id)):
            if app.files.size(folder.path, doc["path"]) < 0 and _delete(
                app, folder, doc["path"], int(doc["bytes"]), float(doc["generated_at"]),
                "file_missing", current=doc,
            ):  # fmt: skip
                missing += 1
    app.projector.catch_up()
    return missing


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _measure(app: App, folder: Folder) -> tuple[int, int, int]:
    """(files, bytes) of what imagecache wrote in a folder, and how many entries it did not."""
    referenced = {str(d["path"]) for d in app.read.renditions_in(folder.id)}
    files = size = foreign = 0
    renditions = []
    for entry in app.files.entries(folder.path, identity=folder.identity):
        what = classify_entry(entry.relpath, entry.kind)
        if what == "rendition":
            renditions.append(entry)
        elif what == "foreign":
            foreign += 1
    unproven = (e.relpath for e in renditions if e.relpath not in referenced)
    written = ownership.written_files(app, folder.id, unproven)
    for entry in renditions:
        if entry.relpath in referenced or entry.relpath in written:
            files += 1
            size += entry.size
        else:
            foreign += 1
    return files, size, foreign


def reconcile(app: App) -> dict[str, Any]:
    """Measure each folder on disk; record any drift from `folder_stats` and correct it.

    Missing rendition files are recorded one by one first (so a later repair or deletion
    knows exactly what was counted); what remains is drift of files the log never knew.
    Only files imagecache wrote are measured: anything else is counted as `foreign`.
    """
    app.projector.catch_up()
    trusted, alone = ownership.folders(app)
    missing = _record_missing(app, trusted)
    report: dict[str, Any] = {"folders": [], "missing_files": missing}
    docs = {d["_id"]: d for d in app.read.folder_docs()}  # as they are after the missing
    for folder in trusted:
        try:
            files, size, foreign = _measure(app, folder)
        except NotOurs:
            alone.append(left_alone(folder.id, folder.path, "replaced"))
            continue
        doc = docs.get(folder.id, folder.doc)
        projected_files, projected_bytes = int(doc.get("files", 0)), int(doc.get("bytes", 0))
        drift = files != projected_files or size != projected_bytes
        if drift:
            app.events.append(
                ev.FolderReconciled(
                    folder.id, _deletion_id(folder.id, "reconcile", files, app.clock.now()),
                    files, size, projected_files, projected_bytes,
                )
            )  # fmt: skip
            log.warning(
                "folder %s drifted: measured %d files / %d bytes, projected %d / %d; corrected",
                folder.path, files, size, projected_files, projected_bytes,
            )  # fmt: skip
        report["folders"].append(
            {
                "id": folder.id, "path": folder.path, "drift": drift,
                "measured_files": files, "measured_bytes": size,
                "projected_files": projected_files, "projected_bytes": projected_bytes,
                "foreign": foreign,
            }
        )  # fmt: skip
    report["left_alone"] = _left(alone)
    app.projector.catch_up()
    return report


def repair_missing(app: App, *, replan: bool = True) -> dict[str, Any]:
    """Renditions whose file is gone are recorded deleted, and their collections re-planned."""
    app.projector.catch_up()
    trusted, alone = ownership.folders(app)
    found = _record_missing(app, trusted)
    lost = app.read.deleted_renditions("file_missing")
    collections = sorted({d["collection_id"] for d in lost})
    jobs: list[str] = []
    queued_in: list[str] = []
    if replan and collections:
        # Files an unfinished job will already make again are not planned a second time.
        bulk = library.regenerate(app, collections)
        jobs = [j.job_id for j in bulk.jobs]
        queued_in = bulk.queued_in
    return {
        "missing": len(lost),  # lost and not made again yet, whenever they were found
        "found_now": found,
        "collections": collections,
        "jobs": jobs,
        "queued_in": queued_in,
        "left_alone": _left(alone),
    }


def enforce_capacity(
    app: App, *, high_water: float = 0.95, low_water: float = 0.85
) -> dict[str, Any]:
    """Evict least-recently-served renditions from folders over `high_water` of capacity
    (only files imagecache wrote, in folders maintenance may touch: see ops.ownership)."""
    app.projector.catch_up()
    report: dict[str, Any] = {"folders": []}
    trusted, alone = ownership.folders(app)
    for folder in trusted:
        capacity = int(folder.doc.get("capacity_bytes", 0))
        used = int(folder.doc.get("bytes", 0))
        if not capacity or used <= capacity * high_water:
            continue
        target = capacity * low_water
        evicted = freed = 0
        for doc in app.read.eviction_order(folder.id):
            if used - freed <= target:
                break
            size = app.files.size(folder.path, doc["path"])
            if _delete(app, folder, doc["path"], max(size, 0), float(doc["generated_at"]),
                       "evicted", current=doc):  # fmt: skip
                evicted += 1
                freed += int(doc["bytes"])
        log.warning("folder %s over %d%%: evicted %d renditions, %d bytes",
                    folder.path, round(100 * high_water), evicted, freed)  # fmt: skip
        report["folders"].append(
            {"id": folder.id, "path": folder.path, "evicted": evicted, "bytes": freed}
        )
    report["left_alone"] = _left(alone)
    app.projector.catch_up()
    return report


def failure_alerts(
    app: App, *, threshold: float = 0.10, min_outcomes: int = 20, webhook: str | None = None
) -> list[dict[str, Any]]:
    """Raise one alert per job whose failure rate passed `threshold`; POST it to `webhook`."""
    app.projector.catch_up()
    raised = []
    for view in app.read.jobs(limit=10_000)[0]:
        done = view["generated"] + view["skipped"] + view["failed"]
        if done < min_outcomes or view["failed"] / done <= threshold:
            continue
        key = f"alert:failure-rate:{view['id']}"
        if app.events.by_key(key) is not None:
            continue
        rate = 100 * view["failed"] / done
        message = (
            f"job {view['id']}: {view['failed']} of {done} renditions failed "
            f"({rate:.0f}% > {100 * threshold:.0f}%): {view['failed_by_class']}"
        )
        app.events.append(
            ev.AlertRaised(f"failure-rate:{view['id']}", f"job:{view['id']}", "warning", message)
        )
        log.warning("ALERT %s", message)
        alert = {
            "job_id": view["id"],
            "message": message,
            "failed_by_class": view["failed_by_class"],
        }
        raised.append(alert)
        if webhook:
            _post(webhook, alert)
    return raised


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5):  # the operator's own URL
            pass
    except OSError as exc:
        log.warning("alert webhook %s failed: %s", url, exc)


def _has_room(app: App, needed: int = 4 << 20) -> bool:
    """Whether some cache folder can take `needed` more bytes now."""
    folders = app.read.folder_docs()
    disk_free = {f["_id"]: app.files.free_bytes(str(f["path"])) for f in folders}
    try:
        choose_folder(folders, needed, disk_free)
    except NoSpace:
        return False
    return True


def recover(app: App, *, stale_after: float | None = None) -> dict[str, int]:
    """Re-send what is left of unfinished jobs (with `stale_after`: only jobs whose last
    heartbeat or progress is older than that many seconds). Paused and cancelled stay so."""
    app.projector.catch_up()
    remove_partials(app)
    now = app.clock.now()

    def busy(doc: dict[str, Any]) -> bool:
        last = max(doc.get("heartbeat_at") or 0, doc.get("last_progress_at") or 0,
                   doc.get("planned_at") or 0)  # fmt: skip
        return stale_after is not None and now - last < stale_after

    return resume_left(app, busy=busy)


def resume_left(
    app: App, *, busy: Callable[[dict[str, Any]], bool], paused: bool = True
) -> dict[str, int]:
    """Re-send what is left of each unfinished job that is not `busy`, and (with `paused`)
    resume the jobs paused for lack of space once some is free; by job, the images left."""
    resumed: dict[str, int] = {}
    if paused and _has_room(app):
        for doc in app.read.paused_jobs():
            if str(doc.get("pause_reason") or "").startswith("no_space"):
                log.info("job %s was paused for lack of space; space is free again", doc["_id"])
                control.resume(app, doc["_id"], "space freed")
                resumed[doc["_id"]] = len(control.remaining_images(app, doc["_id"]))
    for doc in app.read.unfinished_jobs():
        if doc["_id"] in resumed or busy(doc):
            continue
        try:
            resumed[doc["_id"]] = control.resend_remaining(app, doc["_id"])
        except UnknownCollection:
            # Its collection was removed after the job was planned: nothing will run it.
            app.events.append(ev.JobCancelled(doc["_id"], uuid.uuid4().hex, "collection removed"))
            log.info("job %s cancelled: its collection was removed", doc["_id"])
    return resumed
