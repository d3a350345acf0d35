"""JSON responses (orjson) and problem documents (RFC 9457) for errors."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def problem(status: int, title: str, detail: str, type_: str = "about:blank") -> Response:
    """An `application/problem+json` error: what went wrong and what to do, never a trace."""
    body = {"type": type_, "title": title, "status": status, "detail": detail}
    return Response(orjson.dumps(body), status_code=status, media_type="application/problem+json")
