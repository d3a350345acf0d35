"""Maintenance: orphan cleanup, statistics reconciliation, missing-file repair, capacity,
failure alerts and recovery. Every change is an event; each task is also a CLI command.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from actors.files import is_orphaned_partial
from domain import events as ev
from domain.errors import NoSpace, UnknownCollection
from domain.planning import choose_folder
from ops import control, library
from ops.bootstrap import App

log = logging.getLogger("imagecache.maintenance")

DAY = 86_400.0
PARTIAL_MAX_AGE = 3_600.0  # a temporary file this old belongs to no live write, on any host
_LAYOUT = re.compile(r"^(cache|thumbnail)/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{32})\.\w+$")


def _deletion_id(folder_id: str, relpath: str, size: int, mtime: float) -> str:
    raw = f"{folder_id}/{relpath}/{size}/{mtime}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _generated_here(app: App, folder_id: str, relpath: str) -> ev.RenditionGenerated | None:
    """The last generation event that wrote this file, if the log has one."""
    match = _LAYOUT.match(relpath)
    if not match:
        return None
    found = None
    for s in app.events.of_image(match.group(4), limit=10_000):
        e = s.event
        if isinstance(e, ev.RenditionGenerated) and e.folder_id == folder_id and e.path == relpath:
            found = e
    return found


def _delete(
    app: App, folder: dict[str, Any], relpath: str, size: int, mtime: float, reason: str,
    *, current: dict[str, Any] | None, ctime: float | None = None,
) -> ev.RenditionDeleted | None:  # fmt: skip
    """Delete one file, then record it (file first: a crash between leaves drift for reconcile,
    never a deletion recorded for a file still there)."""
    if reason != "file_missing" and app.files.remove(folder["path"], relpath) < 0:
        return None
    origin = _generated_here(app, folder["_id"], relpath) if current is None else None
    # A stray file was counted if a reconcile measured it: it existed before the last one.
    measured = ctime is not None and ctime <= float(folder.get("last_reconciled_at") or 0)
    image, kind = (current["image_id"], current["kind"]) if current else ("", "")
    if origin is not None:
        image, kind = origin.image_id, origin.kind
    match = _LAYOUT.match(relpath)
    if not image and match:
        image, kind = match.group(4), match.group(1)
    event = ev.RenditionDeleted(
        image_id=image,
        kind=kind,
        folder_id=folder["_id"],
        path=relpath,
        bytes=int(current["bytes"]) if current else size,
        reason=reason,
        deletion_id=_deletion_id(folder["_id"], relpath, size, mtime),
        collection_id=(current or {}).get("collection_id")
        or (origin.collection_id if origin else ""),
        was_current=current is not None,
        counted=current is not None or origin is not None or measured,
    )
    app.events.append(event)
    return event


def remove_partials(app: App, *, all_hosts_older_than: float = PARTIAL_MAX_AGE) -> int:
    """Delete temporary files of writes that can no longer finish; return how many."""
    now = app.clock.now()
    removed = 0
    for folder in app.read.folder_docs():
        for relpath, _size, mtime in list(app.files.partials(folder["path"])):
            stale = is_orphaned_partial(Path(relpath).name) or now - mtime > all_hosts_older_than
            if stale and app.files.remove(folder["path"], relpath) >= 0:
                removed += 1
    if removed:
        log.info("removed %d partial files of interrupted writes", removed)
    return removed


def cleanup(app: App, *, dry_run: bool = True, older_than_days: float = 7.0) -> dict[str, Any]:
    """Orphans (files no current rendition references: also what a regenerate with a changed
    spec left at another name) and renditions of removed sources, older than N days.

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
    for folder in app.read.folder_docs():
        referenced = {d["path"]: d for d in app.read.renditions_in(folder["_id"])}
        found: list[dict[str, Any]] = []
        stale = 0
        for relpath, size, mtime in app.files.walk(folder["path"]):
            current = referenced.get(relpath)
            if current is not None and current["image_id"] not in removed_sources:
                stale += current["spec_hash"] != specs.get(current["kind"])
                continue
            if mtime > cutoff:
                continue
            reason = "orphan" if current is None else "source_removed"
            found.append({"path": relpath, "bytes": size, "mtime": mtime, "reason": reason})
            if not dry_run:
                ctime = _ctime(Path(folder["path"]) / relpath)
                _delete(app, folder, relpath, size, mtime, reason, current=current, ctime=ctime)
        report["folders"].append(
            {
                "id": folder["_id"],
                "path": folder["path"],
                "files": len(found),
                "bytes": sum(f["bytes"] for f in found),
                "by_reason": _count(f["reason"] for f in found),
                "stale_kept": stale,
                "sample": found[:50],
            }
        )
    report["stale_kept"] = sum(f["stale_kept"] for f in report["folders"])
    if report["stale_kept"]:
        report["hint"] = (
            f"{report['stale_kept']} current renditions were made with another spec than the"
            " configured one; they are kept until `imagecache regenerate` replaces them"
        )
    app.projector.catch_up()
    return report


def _ctime(path: Path) -> float | None:
    try:
        return path.stat().st_ctime
    except FileNotFoundError:
        return None


def _record_missing(app: App) -> int:
    """Record, file by file, every current rendition whose file is gone."""
    missing = 0
    for folder in app.read.folder_docs():
        for doc in list(app.read.renditions_in(folder["_id"])):
            if app.files.size(folder["path"], doc["path"]) < 0:
                _delete(app, folder, doc["path"], int(doc["bytes"]), float(doc["generated_at"]),
                        "file_missing", current=doc)  # fmt: skip
                missing += 1
    app.projector.catch_up()
    return missing


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def reconcile(app: App) -> dict[str, Any]:
    """Measure each folder on disk; record any drift from `folder_stats` and correct it.

    Missing rendition files are recorded one by one first (so a later repair or deletion
    knows exactly what was counted); what remains is drift of files the log never knew.
    """
    app.projector.catch_up()
    missing = _record_missing(app)
    report: dict[str, Any] = {"folders": [], "missing_files": missing}
    for folder in app.read.folder_docs():
        files = size = 0
        for _rel, n, _mtime in app.files.walk(folder["path"]):
            files += 1
            size += n
        projected_files, projected_bytes = int(folder.get("files", 0)), int(folder.get("bytes", 0))
        drift = files != projected_files or size != projected_bytes
        if drift:
            app.events.append(
                ev.FolderReconciled(
                    folder["_id"], _deletion_id(folder["_id"], "reconcile", files, app.clock.now()),
                    files, size, projected_files, projected_bytes,
                )
            )  # fmt: skip
            log.warning(
                "folder %s drifted: measured %d files / %d bytes, projected %d / %d; corrected",
                folder["path"], files, size, projected_files, projected_bytes,
            )  # fmt: skip
        report["folders"].append(
            {
                "id": folder["_id"], "path": folder["path"], "drift": drift,
                "measured_files": files, "measured_bytes": size,
                "projected_files": projected_files, "projected_bytes": projected_bytes,
            }
        )  # fmt: skip
    app.projector.catch_up()
    return report


def repair_missing(app: App, *, replan: bool = True) -> dict[str, Any]:
    """Renditions whose file is gone are recorded deleted, and their collections re-planned."""
    app.projector.catch_up()
    found = _record_missing(app)
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
    }


def enforce_capacity(
    app: App, *, high_water: float = 0.95, low_water: float = 0.85
) -> dict[str, Any]:
    """Evict least-recently-served renditions from folders over `high_water` of capacity."""
    app.projector.catch_up()
    report: dict[str, Any] = {"folders": []}
    for folder in app.read.folder_docs():
        capacity = int(folder.get("capacity_bytes", 0))
        used = int(folder.get("bytes", 0))
        if not capacity or used <= capacity * high_water:
            continue
        target = capacity * low_water
        evicted = freed = 0
        for doc in app.read.eviction_order(folder["_id"]):
            if used - freed <= target:
                break
            size = app.files.size(folder["path"], doc["path"])
            if _delete(app, folder, doc["path"], max(size, 0), float(doc["generated_at"]),
                       "evicted", current=doc):  # fmt: skip
                evicted += 1
                freed += int(doc["bytes"])
        log.warning("folder %s over %d%%: evicted %d renditions, %d bytes",
                    folder["path"], round(100 * high_water), evicted, freed)  # fmt: skip
        report["folders"].append(
            {"id": folder["_id"], "path": folder["path"], "evicted": evicted, "bytes": freed}
        )
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
