"""Health, service information, the event log (paged by seq) and the page's session."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from starlette.responses import Response

from web.endpoint import Call, Endpoint, Param
from web.responses import JSON, problem
from web.routes_folders import maintenance_available
from web.schemas import ref
from web.sessions import COOKIE, Session, Sessions, cookie_of


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


def _session_body(session: Session | None) -> dict[str, Any]:
    if session is None:
        return {"signed_in": False}
    return {"signed_in": True, "csrf": session.csrf, "expires_at": session.expires_at}


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"  # the anti-CSRF value is for this page only
    return response


def _sign_in(call: Call) -> Response:
    sessions: Sessions = call.state["sessions"]
    sessions.end(cookie_of(call.headers))  # a new sign-in never keeps an old id alive
    sid, session = sessions.start()
    response = _no_store(JSON(_session_body(session)))
    response.set_cookie(
        COOKIE,
        sid,
        max_age=max(1, round(call.web.session_seconds)),
        httponly=True,
        samesite="strict",
        secure=call.https,
        path="/",
    )
    return response


def _session(call: Call) -> Response:
    return _no_store(JSON(_session_body(call.state["sessions"].find(cookie_of(call.headers)))))


def _sign_out(call: Call) -> Response:
    call.state["sessions"].end(cookie_of(call.headers))
    response = _no_store(JSON({"signed_in": False}))
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=call.https)
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
        "GET",
        "/api/v1/session",
        _session,
        "Whether the session cookie is signed in, and then its anti-CSRF value and end",
        "service",
        responses=_ok("Session"),
        errors=(),
        public=True,
    ),
    Endpoint(
        "POST",
        "/api/v1/session",
        _sign_in,
        "Sign the page in (needs the bearer token): an HttpOnly session cookie, and the"
        " anti-CSRF value its changes must send as X-CSRF-Token",
        "service",
        responses=_ok("Session"),
        errors=(),
    ),
    Endpoint(
        "DELETE",
        "/api/v1/session",
        _sign_out,
        "Sign out: end the session (its cookie is worthless from now on) and clear the cookie",
        "service",
        responses=_ok("Session"),
        errors=(),
    ),
]
