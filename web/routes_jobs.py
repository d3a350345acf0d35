"""Bulk operations and processing jobs: plan, list, detail, control, history, failures."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from domain.errors import ERROR_CLASSES, InvalidInput, UnknownCollection, UnknownJob
from domain.views import job_view
from ops import control, library
from ops.bootstrap import App
from web.endpoint import Call, Endpoint, Param, id_param, page_params
from web.problems import Conflict
from web.responses import JSON
from web.schemas import JOB_STATUS, REGENERATE, REGENERATE_ANY, ref

JOBS = "/api/v1/cache/processing-jobs"
JID = id_param("job_id", "job")


def _ok(schema: str, status: int = 200) -> dict[int, tuple[str, str, Any]]:
    return {status: ("OK" if status == 200 else "Accepted", "application/json", ref(schema))}


def _regenerate(call: Call, kind: str) -> Response:
    ids = call.body.get("collections") or []
    everything = bool(call.body.get("all", False))
    if everything and ids:
        raise InvalidInput("give collections or all, not both")
    if not ids and not everything:
        raise InvalidInput('name collections ({"collections": [id, ...]}) or set "all": true')
    bulk = library.regenerate(
        call.app,
        list(dict.fromkeys(ids)),
        everything=everything,
        kind=kind,
        force=bool(call.body.get("force", False)),
    )
    call.app.projector.catch_up()  # so the caller's next read shows the planned jobs
    call.state["jobs"].changed()
    return JSON(dataclasses.asdict(bulk), status_code=202)


def _list(call: Call) -> Response:
    q = call.query
    order = call.state["jobs"]
    ids: list[str] = order.ids(q.get("collection"))
    if q.get("type", "regenerate") != "regenerate":
        ids = []  # every job regenerates today; other types will come with their own jobs
    if q.get("status"):
        ids = order.with_status(ids, q["status"])
    page = ids[q["offset"] : q["offset"] + q["limit"]]
    docs = call.app.read.jobs_by_ids(page)
    jobs = [job_view(docs[j]) for j in page if j in docs]
    return JSON({"total": len(ids), "offset": q["offset"], "limit": q["limit"], "jobs": jobs})


def _detail(call: Call) -> Response:
    job_id = call.path["job_id"]
    view = call.app.read.job(job_id)
    if view is None:
        raise UnknownJob(f"no job {job_id}")
    return JSON(view)


def _control(act: Callable[[App, str], dict[str, Any]]) -> Callable[[Call], Response]:
    def handler(call: Call) -> Response:
        try:
            view = act(call.app, call.path["job_id"])
            call.state["jobs"].changed()  # retry-failed plans a new job
            return JSON(view)
        except (UnknownJob, UnknownCollection):
            raise
        except InvalidInput as exc:
            raise Conflict(str(exc)) from None  # the job's state does not allow it

    return handler


def _events(call: Call) -> Response:
    job_id = call.path["job_id"]
    if call.app.read.job_doc(job_id) is None:
        raise UnknownJob(f"no job {job_id}")
    found = call.app.events.stream(
        f"job:{job_id}", after=call.query["after"], limit=call.query["limit"]
    )
    records = [s.to_record() for s in found]
    nxt = records[-1]["seq"] if records else call.query["after"]
    return JSON({"head": call.app.events.head(), "next_after": nxt, "events": records})


def _failures(call: Call) -> Response:
    q = call.query
    return JSON(
        library.job_failures(
            call.app,
            call.path["job_id"],
            error_class=q.get("class"),
            offset=q["offset"],
            limit=q["limit"],
        )
    )


AFTER = Param(
    "after",
    {"type": "integer", "minimum": 0, "maximum": 2**62, "default": 0},
    description="return events with seq greater than this",
)
EVENT_LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})
CONFLICT = (400, 404, 409)
REGENERATE_DOC = "Plan a bulk operation: one job per collection with renditions missing or stale"

ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/cache/regenerate",
        lambda c: _regenerate(c, "cache"),
        REGENERATE_DOC + " (cache images)",
        "bulk",
        body=REGENERATE,
        responses=_ok("BulkResult", 202),
        errors=(400, 404),
    ),
    Endpoint(
        "POST",
        "/api/v1/thumbnails/regenerate",
        lambda c: _regenerate(c, "thumbnail"),
        REGENERATE_DOC + " (thumbnails)",
        "bulk",
        body=REGENERATE,
        responses=_ok("BulkResult", 202),
        errors=(400, 404),
    ),
    Endpoint(
        "POST",
        "/api/v1/regenerate",
        lambda c: _regenerate(c, c.body.get("kind", "both")),
        REGENERATE_DOC + " (kind: cache, thumbnail or both)",
        "bulk",
        body=REGENERATE_ANY,
        responses=_ok("BulkResult", 202),
        errors=(400, 404),
    ),
    Endpoint(
        "GET",
        JOBS,
        _list,
        "Processing jobs, newest first, filtered (paged)",
        "jobs",
        params=(
            Param("status", {"type": "string", "enum": JOB_STATUS}),
            Param("collection", {"type": "string", "pattern": "^[0-9a-f]{8,64}$"}),
            Param("type", {"type": "string", "enum": ["regenerate"]}),
            *page_params(),
        ),
        responses=_ok("JobPage"),
    ),
    Endpoint(
        "GET",
        JOBS + "/{job_id}",
        _detail,
        "A job's counts, rate, ETA and status",
        "jobs",
        params=(JID,),
        responses=_ok("Job"),
        errors=(400, 404),
    ),
    *(
        Endpoint(
            "POST",
            JOBS + "/{job_id}/" + action,
            _control(act),
            summary,
            "jobs",
            params=(JID,),
            responses=_ok("Job"),
            errors=CONFLICT,
        )
        for action, act, summary in (
            ("pause", control.pause, "Pause a job (409 when finished or cancelled)"),
            (
                "resume",
                control.resume,
                "Resume a job and re-send exactly what it has left (409 when cancelled)",
            ),
            ("cancel", control.cancel, "Cancel a job; what it generated stays (409 when finished)"),
            (
                "retry-failed",
                control.retry_failed,
                "Plan a new job for this job's failed images; answers the new job",
            ),
        )
    ),
    Endpoint(
        "GET",
        JOBS + "/{job_id}/events",
        _events,
        "The job's events, oldest first (paged by seq)",
        "jobs",
        params=(JID, AFTER, EVENT_LIMIT),
        responses=_ok("EventPage"),
        errors=(400, 404),
    ),
    Endpoint(
        "GET",
        JOBS + "/{job_id}/failures",
        _failures,
        "The job's failures with image paths, optionally of one class (paged)",
        "jobs",
        params=(
            JID,
            Param("class", {"type": "string", "enum": list(ERROR_CLASSES)}),
            *page_params(100),
        ),
        responses=_ok("Failures"),
        errors=(400, 404),
    ),
]
