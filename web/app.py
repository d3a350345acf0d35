"""The Starlette application: the JSON API under /api/v1, the page at /, and /metrics.

Each endpoint is declared once in a route table (web/routes_*.py); the table
gives both the routes and the OpenAPI document. Handlers run in Starlette's
thread pool, so the blocking MongoDB driver never stalls the event loop.
Errors become `application/problem+json` in one place (web/problems.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from domain.errors import ImageCacheError
from ops.bootstrap import App
from web import (
    metrics,
    problems,
    routes_collections,
    routes_folders,
    routes_images,
    routes_jobs,
    routes_misc,
)
from web.auth import TokenAuth, load_or_create_token
from web.edges import HostCheck, SecurityHeaders
from web.endpoint import Endpoint, route
from web.openapi import document
from web.orders import ImageOrder, JobOrder
from web.redact import Redactor
from web.responses import JSON
from web.routes_images import FolderRoots, RenditionCache, ServedLog
from web.routes_misc import service_version
from web.sessions import Sessions
from web.settings import WebSettings

STATIC = Path(__file__).parent / "static"


def endpoints() -> list[Endpoint]:
    """Every API operation, in routing order."""
    return [
        *routes_misc.ENDPOINTS,
        *routes_collections.ENDPOINTS,
        *routes_jobs.ENDPOINTS,
        *routes_folders.endpoints(),
        *routes_images.ENDPOINTS,
    ]


def create_app(
    app: App, env: Mapping[str, str] | None = None, *, clock: Callable[[], float] | None = None
) -> Starlette:
    """The web application over a wired App; settings of its own come from `env`, the time
    of day for sessions from `clock` (the App's clock by default)."""
    env = os.environ if env is None else env
    token = load_or_create_token(app.settings, env)
    web = WebSettings.from_env(env, token, listen=app.settings.host)
    sessions = Sessions(app.db, web.session_seconds, clock or app.clock.now)
    table = endpoints()
    state: dict[str, Any] = {
        "sessions": sessions,
        "roots": FolderRoots(app),
        "jobs": JobOrder(app),
        "images": ImageOrder(app),
        "served": ServedLog(app),
        "renditions": RenditionCache(app),
    }
    openapi = document(table, service_version())
    registry = metrics.make_registry(app)

    async def openapi_json(request: Request) -> Response:
        return JSON(openapi)

    async def prometheus(request: Request) -> Response:
        body = await run_in_threadpool(metrics.render, registry)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    routes: list[BaseRoute] = [
        Route("/", page, methods=["GET"]),
        Route("/api/v1/openapi.json", openapi_json, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        *(route(e, app, web, state) for e in table),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handle = problems.handler(Redactor(app).path_free)
    return Starlette(
        routes=routes,
        # Outermost first: every answer gets the security headers, the Host is checked
        # before anything else is looked at, then who is asking.
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(HostCheck, web=web),
            Middleware(TokenAuth, web=web, sessions=sessions),
        ],
        # Expected errors are answered by Starlette's ExceptionMiddleware; anything else
        # reaches ServerErrorMiddleware, which answers the same way and logs the trace.
        exception_handlers={
            HTTPException: handle,
            ImageCacheError: handle,
            problems.HTTPProblem: handle,
            Exception: handle,
        },
    )
