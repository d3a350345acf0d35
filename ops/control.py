"""Job control and resume: pause, resume, cancel, retry failed, re-send what is left.

What is left of a job is computed from the log, never from a counter:
planned images (its `JobImagesPlanned` pages) minus images that have an
outcome for every planned kind.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from actors.plan import id_messages_for, messages_for, plan_job
from domain import events as ev
from domain.errors import InvalidInput, UnknownCollection, UnknownJob
from domain.planning import quarantined
from domain.specs import RenditionSpec
from domain.views import job_status
from ops.bootstrap import App

log = logging.getLogger("imagecache.control")


def _job(app: App, job_id: str) -> dict[str, Any]:
    app.projector.catch_up()
    doc = app.read.job_doc(job_id)
    if doc is None or "total" not in doc:
        raise UnknownJob(f"no job {job_id}")
    return doc


def _header(app: App, job_id: str) -> ev.JobPlanned:
    found = app.events.by_key(f"job:{job_id}:planned")
    if found is None or not isinstance(found.event, ev.JobPlanned):
        raise UnknownJob(f"no job {job_id}")
    return found.event


def job_progress(
    app: App, job_id: str, header: ev.JobPlanned | None = None
) -> tuple[list[str], dict[str, set[str]], dict[str, str]]:
    """(planned image ids, images with an outcome per kind, failure class per failed image).

    Outcomes come from the compact `job_outcomes` projection up to the projector's
    position, and from the log beyond it (and for gaps it has not filled yet), so the
    answer is exact whether or not the projector is caught up, and fast when it is.
    """
    header = header or _header(app, job_id)
    planned: list[str] = []
    for page in range(header.pages):
        found = app.events.by_key(f"job:{job_id}:images:{page}")
        if found is not None and isinstance(found.event, ev.JobImagesPlanned):
            planned.extend(found.event.image_ids)
    done: dict[str, set[str]] = defaultdict(set)
    failed: dict[str, str] = {}
    position = app.projector.position()  # read first: the projection then holds at least this
    for kind, images, error in app.read.job_outcome_lists(job_id):
        done[kind].update(images)
        if error:
            failed.update(dict.fromkeys(images, error))
    beyond = list(app.events.job_outcomes(job_id, after=position))
    gaps = app.projector.unfilled_gaps()
    for s in app.events.seqs(gaps) if gaps else []:
        if s.stream == f"job:{job_id}" and (row := ev.outcome_row(s)) is not None:
            beyond.append(row)
    for _, image, kind, error in beyond:
        done[kind].add(image)
        if error:
            failed[image] = error
    return planned, done, failed


def remaining_images(app: App, job_id: str, header: ev.JobPlanned | None = None) -> list[str]:
    """Planned images of a job that still lack an outcome for some planned kind."""
    header = header or _header(app, job_id)
    planned, done, _ = job_progress(app, job_id, header)
    sets = [done.get(kind, set()) for kind in header.kinds]
    return [i for i in planned if not all(i in s for s in sets)]


def queued_lookup(app: App) -> Callable[[str, Sequence[RenditionSpec]], dict[str, str]]:
    """`queued_images` for one bulk operation: the unfinished jobs are read once (one
    query for a library of any number of collections, not one per collection)."""
    by_collection: dict[str, list[dict[str, Any]]] | None = None

    def lookup(collection_id: str, specs: Sequence[RenditionSpec]) -> dict[str, str]:
        nonlocal by_collection
        if by_collection is None:
            by_collection = defaultdict(list)
            for doc in app.read.unfinished_jobs():
                by_collection[str(doc.get("collection_id"))].append(doc)
        return queued_images(app, collection_id, specs, by_collection.get(collection_id, []))

    return lookup


def queued_images(
    app: App, collection_id: str, specs: Sequence[RenditionSpec], jobs: Sequence[dict[str, Any]]
) -> dict[str, str]:
    """Images that a queued or running job of the collection (`jobs`) will still make in
    every one of `specs` (same spec hash), each with that job's id: planning leaves them out.

    An image that a scan found changed after that job was planned is not counted: the job
    would make it from what it knew. (One that job already failed for one kind, with
    another kind still to make, is: the next plan after the job takes it up again.)"""
    found: dict[str, str] = {}
    headers = []
    for doc in jobs:
        hashes = doc.get("spec_hashes") or {}
        if all(hashes.get(s.kind) == s.hash for s in specs):
            planned = app.events.by_key(f"job:{doc['_id']}:planned")
            if planned is not None and isinstance(planned.event, ev.JobPlanned):
                headers.append((planned.event, planned.seq))
    if not headers:
        return found
    # Images changed since the oldest of those plans: none unless the collection was scanned
    # since (its document's position says so, without reading every image's document).
    oldest = min(seq for _, seq in headers)
    collection = app.read.collection(collection_id, include_removed=True) or {}
    marks: dict[str, int] = {}
    if int(collection.get("_seq") or 0) > oldest:
        marks = app.read.image_marks(collection_id, after=oldest)
    for header, seq in headers:
        for image in remaining_images(app, header.job_id, header):
            if marks.get(image, 0) < seq:
                found.setdefault(image, header.job_id)
    return found


def resend_remaining(app: App, job_id: str) -> int:
    """Publish messages for exactly the images a job has left; return how many images."""
    header = _header(app, job_id)
    left = remaining_images(app, job_id, header)
    if not left:
        return 0
    collection = app.read.collection(header.collection_id)
    if collection is None:
        raise UnknownCollection(f"job {job_id} names a collection that is gone")
    specs = [RenditionSpec.from_dict(header.specs[k]) for k in header.kinds]
    # Ids only: each worker looks up its own small batch (large `$in` lists are slow on
    # SecantusDB, and recovery then reads no image documents at all).
    app.actors.publish(
        id_messages_for(
            job_id, collection, specs, left, app.settings.batch_size,
            force=_was_forced(app, header),
        )
    )  # fmt: skip
    log.info("resumed job %s: %d remaining", job_id, len(left))
    return len(left)


def _was_forced(app: App, header: ev.JobPlanned) -> bool:
    bulk = app.events.by_key(f"bulk:{header.bulk_id}:requested")
    return bool(bulk and isinstance(bulk.event, ev.BulkOperationRequested) and bulk.event.force)


def pause(app: App, job_id: str, reason: str = "") -> dict[str, Any]:
    """Stop work on a job: its queued messages are acknowledged and dropped."""
    doc = _job(app, job_id)
    if job_status(doc) in ("finished", "cancelled"):
        raise InvalidInput(f"job {job_id} is {job_status(doc)}: it cannot be paused")
    app.events.append(ev.JobPaused(job_id, uuid.uuid4().hex, reason))
    return _view(app, job_id)


def resume(app: App, job_id: str, reason: str = "") -> dict[str, Any]:
    """Resume a paused job: record it, then re-send exactly what is left."""
    doc = _job(app, job_id)
    if job_status(doc) == "cancelled":
        raise InvalidInput(f"job {job_id} is cancelled: plan a new one with `regenerate`")
    with app.publishing:  # no pick-up pass between the resume and its messages
        app.events.append(ev.JobResumed(job_id, uuid.uuid4().hex, reason))
        app.projector.catch_up()
        resend_remaining(app, job_id)
    return _view(app, job_id)


def cancel(app: App, job_id: str, reason: str = "") -> dict[str, Any]:
    """Cancel a job for good; what it generated stays."""
    doc = _job(app, job_id)
    if job_status(doc) == "finished":
        raise InvalidInput(f"job {job_id} is finished: nothing to cancel")
    app.events.append(ev.JobCancelled(job_id, uuid.uuid4().hex, reason))
    return _view(app, job_id)


def retry_failed(app: App, job_id: str) -> dict[str, Any]:
    """Plan a new job, linked to this one, for its failed images only."""
    _job(app, job_id)
    header = _header(app, job_id)
    _, _, failed = job_progress(app, job_id, header)
    if not failed:
        raise InvalidInput(f"job {job_id} has no failed images to retry")
    collection = app.read.collection(header.collection_id)
    if collection is None:
        raise UnknownCollection(f"job {job_id} names a collection that is gone")
    specs = [RenditionSpec.from_dict(header.specs[k]) for k in header.kinds]
    held = quarantined(
        app.read.plan_inputs(header.collection_id).failures, app.settings.quarantine_after
    )
    sources = app.read.source_images_by_id(sorted(set(failed) - held))
    if not sources:
        raise InvalidInput(
            f"every failed image of job {job_id} is quarantined or gone",
            hint="fix the sources and rescan, or regenerate with --force",
        )
    new_id = uuid.uuid4().hex
    with app.publishing:  # no pick-up pass between the job's events and its messages
        plan_job(app.events, new_id, header.bulk_id, header.collection_id, specs, sources, 0,
                 retry_of=job_id)  # fmt: skip
        app.actors.publish(
            messages_for(new_id, collection, specs, sources, app.settings.batch_size, force=True)
        )
    return _view(app, new_id)


def _view(app: App, job_id: str) -> dict[str, Any]:
    app.projector.catch_up()
    view = app.read.job(job_id)
    if view is None:
        raise UnknownJob(f"no job {job_id}")
    return view
