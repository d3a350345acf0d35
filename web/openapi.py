"""The OpenAPI 3.0 document, generated from the route table so it describes every route."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from web.endpoint import Endpoint
from web.schemas import COMPONENTS, ref

PROBLEM = "application/problem+json"
ERROR_TEXT = {
    400: "the request is invalid (a parameter, the body, or the Host header); the problem says"
    " what to fix",
    401: "a token is required (Authorization: Bearer <token>), or a session cookie with its"
    " X-CSRF-Token header for a change",
    404: "no such thing; the problem says how to find or make it",
    409: "the current state does not allow this; the problem says what to do",
    413: "the request body is too large",
}
IMAGE_TYPES = ("image/jpeg", "image/webp", "image/avif")


def _operation_id(e: Endpoint) -> str:
    words = re.sub(r"[{}]", "", e.path.removeprefix("/api/v1/")).replace("-", "_")
    return f"{e.method.lower()}_{re.sub(r'[^a-z0-9_]+', '_', words).strip('_') or 'root'}"


def _content(media: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    if media == "image/*":
        return {t: {"schema": schema or {}} for t in IMAGE_TYPES}
    return {media: {"schema": schema or {}}}


def _responses(e: Endpoint) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, (text, media, schema) in e.responses.items():
        out[str(status)] = {"description": text}
        if media:
            out[str(status)]["content"] = _content(media, schema)
    # Any operation may get a malformed query or an unknown Host header.
    codes = set(e.errors) | {400}
    if not e.public:
        codes.add(401)
    if e.body is not None:
        codes |= {400, 413}
    if e.params:
        codes.add(400)
    for status in sorted(codes):
        out[str(status)] = {
            "description": ERROR_TEXT[status],
            "content": {PROBLEM: {"schema": ref("Problem")}},
        }
    out["default"] = {
        "description": "the server or a service it needs failed",
        "content": {PROBLEM: {"schema": ref("Problem")}},
    }
    return out


def _operation(e: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": _operation_id(e),
        "summary": e.summary,
        "tags": [e.tag],
        "responses": _responses(e),
    }
    if e.params:
        op["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.where == "path",
                "schema": p.schema,
                **({"description": p.description} if p.description else {}),
            }
            for p in e.params
        ]
    if e.body is not None:
        op["requestBody"] = {
            "required": bool(e.body.get("required")),
            "content": {"application/json": {"schema": e.body}},
        }
    if e.public:
        op["security"] = []
    elif e.changes:
        op["security"] = [{"bearer": []}, {"cookie": [], "csrf": []}]
    return op


def _extra() -> dict[str, Any]:
    """Routes outside the table: the page and the metrics."""
    text = {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
    html = {"description": "OK", "content": {"text/html": {"schema": {"type": "string"}}}}
    unauthorised = {
        "description": ERROR_TEXT[401],
        "content": {PROBLEM: {"schema": ref("Problem")}},
    }
    invalid = {"description": ERROR_TEXT[400], "content": {PROBLEM: {"schema": ref("Problem")}}}
    return {
        "/": {
            "get": {
                "operationId": "get_page",
                "summary": "The web page",
                "tags": ["page"],
                "security": [],
                "responses": {"200": html, "400": invalid},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "get_metrics",
                "tags": ["service"],
                "summary": "Prometheus metrics (text exposition format)",
                "responses": {"200": text, "400": invalid, "401": unauthorised},
            }
        },
    }


def document(endpoints: Iterable[Endpoint], version: str) -> dict[str, Any]:
    """A valid OpenAPI 3.0.3 document for these endpoints."""
    paths: dict[str, Any] = {}
    for e in endpoints:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e)
    paths.update(_extra())
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "imagecache",
            "version": version,
            "description": "Cache images and thumbnails for large image libraries. Errors are "
            "application/problem+json and name no server path but the one the request sent. "
            "Changes need 'Authorization: Bearer <token>', or the page's session cookie with "
            "the session's X-CSRF-Token header; reads the token or the cookie. Query "
            "parameters an operation does not take, or given twice, are refused.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "imagecache_session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
    }
