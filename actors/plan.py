"""Plan a bulk operation: one job per collection, only what is missing, stale or forced.

`JobPlanned` (and its image pages) are stored before any message is published,
so a crash after planning loses nothing: recovery re-sends planned minus done.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from domain import events as ev
from domain.errors import UnknownCollection
from domain.planning import SourceImage, pages, plan_images, quarantined
from domain.ports import EventLog
from domain.specs import RenditionSpec
from projections.readmodels import ReadModels

log = logging.getLogger("imagecache.plan")

PLAN_PAGE = 5000
Publish = Callable[[list[dict[str, Any]]], None]
# (collection id, wanted specs) -> the images unfinished jobs of that collection will still
# make in those specs, each with the id of the job that has it.
Queued = Callable[[str, Sequence[RenditionSpec]], Mapping[str, str]]


@dataclass(frozen=True)
class PlannedJob:
    job_id: str
    collection_id: str
    images: int
    current: int
    to_process: int


@dataclass(frozen=True)
class BulkResult:
    bulk_id: str
    images: int
    current: int
    jobs: list[PlannedJob]
    quarantined: int = 0
    queued: int = 0  # images left out because an unfinished job will still make them
    queued_in: list[str] = field(default_factory=list)  # those jobs: wait for them too


def _head(
    job_id: str, collection: Mapping[str, Any], specs: Sequence[RenditionSpec], force: bool
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "collection_id": collection["_id"],
        "path": collection["path"],
        "source": collection["source"],
        "specs": [s.to_dict() for s in specs],
        "force": force,
    }


def messages_for(
    job_id: str, collection: Mapping[str, Any], specs: Sequence[RenditionSpec],
    images: Sequence[SourceImage], batch_size: int, *, force: bool,
) -> list[dict[str, Any]]:  # fmt: skip
    """The generation messages of a job: each carries a batch of images."""
    head = _head(job_id, collection, specs, force)
    return [
        {
            **head,
            "items": [
                [i.image_id, i.path, i.size, i.mtime, i.version] for i in images[n : n + batch_size]
            ],
        }
        for n in range(0, len(images), batch_size)
    ]


def id_messages_for(
    job_id: str, collection: Mapping[str, Any], specs: Sequence[RenditionSpec],
    image_ids: Sequence[str], batch_size: int, *, force: bool,
) -> list[dict[str, Any]]:  # fmt: skip
    """Messages naming images by id only; the worker reads their path and fingerprint."""
    head = _head(job_id, collection, specs, force)
    return [
        {**head, "ids": list(image_ids[n : n + batch_size])}
        for n in range(0, len(image_ids), batch_size)
    ]


def request_bulk(
    events: EventLog,
    read: ReadModels,
    publish: Publish,
    specs: Mapping[str, RenditionSpec],
    *,
    collection_ids: Sequence[str] = (),
    everything: bool = False,
    kinds: Sequence[str] = ("cache", "thumbnail"),
    force: bool = False,
    batch_size: int = 8,
    quarantine_after: int = 3,
    queued: Queued | None = None,
) -> BulkResult:
    """Record the request, plan a job for each collection with work left, publish its batches.

    With `queued`, images that an unfinished job will still make are left out (unless forced):
    a second request while the first one runs, a nightly repair of files the last one has not
    made yet, or two clicks, do the work once."""
    bulk_id = uuid.uuid4().hex
    if everything:
        collections = read.collections()
    else:
        collections = []
        for cid in collection_ids:
            doc = read.collection(cid)
            if doc is None:
                raise UnknownCollection(f"no collection {cid}")
            collections.append(doc)
    events.append(
        ev.BulkOperationRequested(
            bulk_id, [c["_id"] for c in collections], list(kinds), force, everything
        )
    )
    wanted = [specs[k] for k in kinds]
    jobs: list[PlannedJob] = []
    total_images = total_current = total_quarantined = total_queued = 0
    queued_in: dict[str, None] = {}
    for collection in collections:
        cid = collection["_id"]
        inputs = read.plan_inputs(cid)
        images = inputs.images
        held = quarantined(inputs.failures, quarantine_after)
        waiting = queued(cid, wanted) if queued is not None and not force else {}
        plan = plan_images(
            images, wanted, inputs.current, force=force, skip=held, queued=waiting.keys()
        )
        total_images += len(images)
        total_current += plan.current
        total_quarantined += plan.quarantined
        total_queued += plan.queued
        queued_in.update(dict.fromkeys(waiting[i] for i in plan.queued_ids))
        # One line per collection: with thousands of them, only with -v (`up` and
        # `regenerate` print the totals).
        log.debug(
            "%s: %d images, %d current, %d quarantined, %d queued in unfinished jobs,"
            " %d to process",
            collection["path"], len(images), plan.current, plan.quarantined, plan.queued,
            len(plan.todo),
        )  # fmt: skip
        if not plan.todo:
            continue
        job_id = uuid.uuid4().hex
        plan_job(events, job_id, bulk_id, cid, wanted, plan.todo, plan.current)
        publish(messages_for(job_id, collection, wanted, plan.todo, batch_size, force=force))
        jobs.append(PlannedJob(job_id, cid, len(images), plan.current, len(plan.todo)))
    return BulkResult(
        bulk_id, total_images, total_current, jobs, total_quarantined, total_queued,
        list(queued_in),
    )  # fmt: skip


def plan_job(
    events: EventLog, job_id: str, bulk_id: str, cid: str, specs: Sequence[RenditionSpec],
    todo: Sequence[SourceImage], current: int, *, retry_of: str = "",
) -> None:  # fmt: skip
    """Store a job's header and its image pages (before anything is published)."""
    image_pages = pages([i.image_id for i in todo], PLAN_PAGE)
    header = ev.JobPlanned(
        job_id=job_id,
        bulk_id=bulk_id,
        collection_id=cid,
        kinds=[s.kind for s in specs],
        specs={s.kind: s.to_dict() for s in specs},
        spec_hashes={s.kind: s.hash for s in specs},
        images=len(todo),
        already_current=current,
        pages=len(image_pages),
        retry_of=retry_of,
    )
    page_events = [ev.JobImagesPlanned(job_id, n, p) for n, p in enumerate(image_pages)]
    events.append_many([*page_events, header])
