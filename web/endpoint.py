"""The route table: one `Endpoint` per operation drives both routing and the OpenAPI document.

A handler is a plain function of a `Call` (validated path, query and body).
It runs in Starlette's thread pool, so the blocking MongoDB driver never
stalls the event loop. Parameters and bodies are checked against the same
JSON schemas the OpenAPI document publishes, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.errors import InvalidInput
from ops.bootstrap import App
from web.schema_check import check
from web.settings import WebSettings

Schema = dict[str, Any]
ID_PATTERN = "^[0-9a-f]{8,64}$"


@dataclass(frozen=True)
class Param:
    """A query or path parameter and its JSON schema."""

    name: str
    schema: Schema
    where: str = "query"
    description: str = ""


def id_param(name: str, what: str) -> Param:
    return Param(name, {"type": "string", "pattern": ID_PATTERN}, "path", f"the {what}'s id")


def page_params(default: int = 50, high: int = 1000) -> tuple[Param, Param]:
    return (
        Param("offset", {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}),
        Param("limit", {"type": "integer", "minimum": 1, "maximum": high, "default": default}),
    )


@dataclass(frozen=True)
class Call:
    """One validated request, as a handler sees it."""

    app: App
    web: WebSettings
    path: dict[str, str]
    query: dict[str, Any]
    body: dict[str, Any]
    headers: Headers
    state: dict[str, Any]
    https: bool = False  # the request came over https (cookies then get Secure)


Handler = Callable[[Call], Response]


@dataclass(frozen=True)
class Endpoint:
    """One operation: method, path, handler and what the OpenAPI document says about it."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    params: tuple[Param, ...] = ()
    body: Schema | None = None
    # status -> (description, media type, schema or None)
    responses: Mapping[int, tuple[str, str, Schema | None]] = field(default_factory=dict)
    errors: tuple[int, ...] = (400,)
    public: bool = False  # readable without a token even when reads are closed

    @property
    def changes(self) -> bool:
        return self.method not in ("GET", "HEAD")


INTEGER = re.compile(r"-?[0-9]+", re.ASCII)
MAX_DIGITS = 30  # more is out of every range we take; refused before int() reads it


def _shown(name: str, limit: int = 60) -> str:
    return repr(name if len(name) <= limit else name[:limit] + "...")


def _range(schema: Schema) -> str:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    return f" of at least {lo}" if lo is not None else ""


def _coerce(raw: str, schema: Schema, name: str) -> Any:
    kind = schema.get("type")
    if kind == "integer":
        # Only ASCII digits with one optional leading minus: str.isdigit and int() also
        # take "²", "٣" or "1_000", which are no numbers a client means to send.
        if len(raw) > MAX_DIGITS or not INTEGER.fullmatch(raw):
            raise InvalidInput(
                f"{name} must be a whole number{_range(schema)}, written with the digits 0-9"
            )
        return int(raw)
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise InvalidInput(f"{name} must be true or false")
        return raw == "true"
    return raw


def parse_params(
    params: tuple[Param, ...], path: Mapping[str, str], query: Any
) -> tuple[dict[str, str], dict[str, Any]]:
    """Validated path and query values, defaults filled in.

    A query parameter the operation does not take, or one given twice, is refused: a typo
    would otherwise be ignored silently, and of two values neither is clearly the one meant.
    """
    known = [p.name for p in params if p.where == "query"]
    for name in dict.fromkeys(query.keys()):
        if name not in known:
            takes = f"it takes {', '.join(known)}" if known else "it takes none"
            raise InvalidInput(f"unknown query parameter {_shown(name)}: {takes}")
        if len(query.getlist(name)) > 1:
            raise InvalidInput(f"the query parameter {_shown(name)} is given more than once")
    path_out: dict[str, str] = {}
    query_out: dict[str, Any] = {}
    for p in params:
        raw = path.get(p.name) if p.where == "path" else query.get(p.name)
        if raw is None:
            if "default" in p.schema:
                query_out[p.name] = p.schema["default"]
            continue
        value = _coerce(raw, p.schema, p.name)
        check(value, p.schema, p.name)
        if p.where == "path":
            path_out[p.name] = value
        else:
            query_out[p.name] = value
    return path_out, query_out


def parse_body(raw: bytes, schema: Schema | None) -> dict[str, Any]:
    """The JSON body checked against the endpoint's schema ({} when it takes none)."""
    if schema is None:
        return {}
    if not raw.strip():
        raw = b"{}"
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput("the request body is not JSON") from None
    check(body, schema, "body")
    assert isinstance(body, dict)  # the schemas of bodies are objects
    return body


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes (413) before reading it all."""
    from web.problems import BodyTooLarge

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def route(endpoint: Endpoint, app: App, web: WebSettings, state: dict[str, Any]) -> Route:
    """A Starlette route that validates the request and runs the handler in the thread pool."""

    async def asgi_endpoint(request: Request) -> Response:
        raw = await read_body(request, web.body_limit)
        path, query = parse_params(endpoint.params, request.path_params, request.query_params)
        body = parse_body(raw, endpoint.body)
        if isinstance(body.get("path"), str):
            # An error may echo the path the request sent, and no other (web/redact.py).
            request.state.sent_path = body["path"]
        https = request.scope.get("scheme") == "https"
        call = Call(app, web, path, query, body, request.headers, state, https)
        return await run_in_threadpool(endpoint.handler, call)

    return Route(endpoint.path, asgi_endpoint, methods=[endpoint.method])
