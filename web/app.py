"""The Starlette application: JSON API under /api/v1 over the read models.

Endpoints are plain functions: Starlette runs them in its thread pool, so the
blocking MongoDB driver never stalls the event loop.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.errors import ImageCacheError, InvalidInput, ServiceUnavailable
from ops.bootstrap import App
from web.responses import JSON, problem

log = logging.getLogger("imagecache.web")


def _int_param(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= high:
        raise InvalidInput(f"{name} must be a whole number from 0 to {high}")
    return int(raw)


def create_app(app: App) -> Starlette:
    """The web application over a wired App."""

    def health(request: Request) -> Response:
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

    def processing_jobs(request: Request) -> Response:
        status = request.query_params.get("status")
        offset = _int_param(request, "offset", 0, 10**9)
        limit = _int_param(request, "limit", 50, 1000)
        jobs, total = app.read.jobs(
            status=status,
            collection_id=request.query_params.get("collection"),
            offset=offset,
            limit=limit,
        )
        return JSON({"total": total, "offset": offset, "limit": limit, "jobs": jobs})

    def folder_statistics(request: Request) -> Response:
        return JSON({"folders": app.read.folders()})

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, InvalidInput):
            return problem(400, "invalid request", str(exc))
        if isinstance(exc, ServiceUnavailable):
            return problem(503, "service unavailable", str(exc))
        if isinstance(exc, ImageCacheError):
            return problem(500, "request failed", str(exc))
        log.exception("unhandled error on %s", request.url.path)
        return problem(500, "internal error", "the server failed; see its log for details")

    async def on_http(request: Request, exc: Any) -> Response:
        assert isinstance(exc, HTTPException)
        return problem(exc.status_code, str(exc.detail), f"{request.url.path}: {exc.detail}")

    routes = [
        Route("/api/v1/health", health),
        Route("/api/v1/cache/processing-jobs", processing_jobs),
        Route("/api/v1/cache/folders/statistics", folder_statistics),
    ]
    return Starlette(
        routes=routes, exception_handlers={Exception: on_error, HTTPException: on_http}
    )
