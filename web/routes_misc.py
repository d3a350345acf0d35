"""Health, service information, the event log (paged by seq) and the page's session cookie."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from starlette.responses import Response

from web.auth import COOKIE, cookie_value
from web.endpoint import Call, Endpoint, Param
from web.responses import JSON, problem
from web.routes_folders import maintenance_available
from web.schemas import ref


def _ok(schema: str) -> dict[int, tuple[str, str, Any]]:
    return {200: ("OK", "application/json", ref(schema))}


def _health(call: Call) -> Response:
    app = call.app
    try:
        app.db.command("ping")
    except Exception:
        return problem(503, "database unavailable", "MongoDB did not answer the health check")
    return JSON(
        {
            "status": "ok",
            "head": app.events.head(),
            "projected": app.projector.position(),
            "lag": app.projector.lag(),
        }
    )


def service_version() -> str:
    """The installed package's version ("0" when run from a source tree)."""
    try:
        return metadata.version("imagecache")
    except metadata.PackageNotFoundError:
        return "0"


def _info(call: Call) -> Response:
    return JSON(
        {
            "version": service_version(),
            "open_reads": call.web.open_reads,
            "kinds": list(call.app.settings.specs),
            "maintenance": maintenance_available(),
            "body_limit": call.web.body_limit,
        }
    )


def _events(call: Call) -> Response:
    after, limit = call.query["after"], call.query["limit"]
    records = [s.to_record() for s in call.app.events.read(after=after, limit=limit)]
    nxt = records[-1]["seq"] if records else after
    return JSON({"head": call.app.events.head(), "next_after": nxt, "events": records})


def _sign_in(call: Call) -> Response:
    response = JSON({"signed_in": True})
    response.set_cookie(
        COOKIE, cookie_value(call.web.token), httponly=True, samesite="strict", path="/"
    )
    return response


def _sign_out(call: Call) -> Response:
    response = JSON({"signed_in": False})
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


AFTER = Param(
    "after",
    {"type": "integer", "minimum": 0, "maximum": 2**62, "default": 0},
    description="return events with seq greater than this",
)
LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})

ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/v1/health",
        _health,
        "Liveness, log head and projector lag",
        "service",
        responses={
            **_ok("Health"),
            503: ("database unavailable", "application/problem+json", ref("Problem")),
        },
        errors=(),
        public=True,
    ),
    Endpoint(
        "GET",
        "/api/v1/info",
        _info,
        "Version, kinds and which features are available",
        "service",
        responses=_ok("Info"),
        errors=(),
    ),
    Endpoint(
        "GET",
        "/api/v1/events",
        _events,
        "The event log in seq order (paged by seq)",
        "events",
        params=(AFTER, LIMIT),
        responses=_ok("EventPage"),
    ),
    Endpoint(
        "POST",
        "/api/v1/session",
        _sign_in,
        "Set the HttpOnly read cookie the page's <img> tags use (needs the bearer token)",
        "service",
        responses=_ok("Session"),
        errors=(),
    ),
    Endpoint(
        "DELETE",
        "/api/v1/session",
        _sign_out,
        "Clear the read cookie",
        "service",
        responses=_ok("Session"),
        errors=(),
    ),
]
