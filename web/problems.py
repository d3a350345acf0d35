"""Errors to HTTP, in one place: every failure becomes an `application/problem+json` answer.

A problem says what went wrong and what to do. It never carries a stack trace,
and never a server path: the messages of the use cases are written for the
operator at a terminal, so their details pass through `scrub` (web/redact.py),
which keeps the path the request sent and names everything else by id or name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import dramatiq.errors
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from domain.errors import (
    ImageCacheError,
    InvalidInput,
    PathOutsideRoots,
    ServiceUnavailable,
    UnknownCollection,
    UnknownFolder,
    UnknownJob,
)
from web.responses import problem

log = logging.getLogger("imagecache.web")


class HTTPProblem(Exception):
    """An answer the web layer chose on purpose (404 for a missing file, 409, 413, ...)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


class Conflict(HTTPProblem):
    def __init__(self, detail: str) -> None:
        super().__init__(409, "conflict", detail)


class NotFound(HTTPProblem):
    def __init__(self, detail: str) -> None:
        super().__init__(404, "not found", detail)


class BodyTooLarge(HTTPProblem):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "request body too large", f"send at most {limit} bytes")


def _type(status: int) -> str:
    return f"https://imagecache.invalid/problems/{status}"


def _same(text: str) -> str:
    return text


def to_response(exc: Exception, path: str, scrub: Callable[[str], str] = _same) -> Response:
    """The problem answer for any exception raised while serving `path`."""
    if isinstance(exc, HTTPProblem):
        return problem(exc.status, exc.title, scrub(exc.detail), _type(exc.status))
    if isinstance(exc, UnknownCollection | UnknownFolder | UnknownJob):
        return problem(404, "not found", scrub(str(exc)), _type(404))
    if isinstance(exc, PathOutsideRoots):
        return problem(400, "path outside the library roots", scrub(str(exc)), _type(400))
    if isinstance(exc, InvalidInput):
        return problem(400, "invalid request", scrub(str(exc)), _type(400))
    if isinstance(exc, ServiceUnavailable) or _broker_failed(exc):
        # Its message may carry a connection URI with credentials: log it, do not send it.
        log.error("service unavailable on %s: %s", path, exc)
        detail = (
            "a service imagecache depends on did not answer; retry, and see the server log"
            " (what was planned is kept: recovery sends it once the service is back)"
        )
        return problem(503, "service unavailable", detail, _type(503))
    if isinstance(exc, HTTPException):
        return problem(
            exc.status_code, str(exc.detail), f"{exc.detail}: {path}", _type(exc.status_code)
        )
    if isinstance(exc, ImageCacheError):
        log.error("request failed on %s: %s", path, exc)
        detail = "the request failed; see the server log for details"
        return problem(500, "request failed", detail, _type(500))
    log.error("unhandled error on %s", path, exc_info=exc)
    return problem(500, "internal error", "the server failed; see its log for details", _type(500))


def handler(scrub: Callable[[str, list[str]], str]) -> Callable[..., Any]:
    """A Starlette exception handler mapping anything to a problem answer whose details
    name no path but those the request sent (`scrub(text, sent)`)."""

    async def handle(request: Request, exc: Exception) -> Response:
        path = str(request.scope["path"])  # not request.url: it decodes the raw query
        sent = [path, getattr(request.state, "sent_path", "")]
        # Naming paths by id may read the read models: not on the event loop.
        return await run_in_threadpool(to_response, exc, path, lambda text: scrub(text, sent))

    return handle


def _broker_failed(exc: BaseException) -> bool:
    """RabbitMQ refused or dropped a publish (dramatiq's connection error family)."""
    return isinstance(exc, dramatiq.errors.BrokerConnectionError)
