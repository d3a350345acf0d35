"""Who may do what: a bearer token for every change; reads closed unless opened by a setting.

- The token comes from IMAGECACHE_API_TOKEN, else from `<data dir>/api-token`
  (created once with mode 0600, printed by `imagecache serve`).
- POST, PUT, PATCH and DELETE need `Authorization: Bearer <token>`, always in
  the header: a cookie never authorises a change, so a cross-site form cannot
  make one.
- GET and HEAD need the header or the session cookie, unless
  IMAGECACHE_OPEN_READS=1. The cookie exists for `<img>` tags, which cannot
  send headers: `POST /api/v1/session` (with the bearer header) sets it
  HttpOnly and SameSite=Strict; its value is an HMAC of the token, not the token.
- The page, its static files, health and the OpenAPI document are always open.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ops.settings import Settings
from web.responses import problem
from web.settings import WebSettings

TOKEN_FILE = "api-token"
COOKIE = "imagecache_session"
OPEN_PATHS = ("/", "/favicon.ico", "/api/v1/health", "/api/v1/openapi.json")
OPEN_PREFIXES = ("/static/",)
READ_METHODS = ("GET", "HEAD")


def load_or_create_token(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """The API token: IMAGECACHE_API_TOKEN, else the data folder's token file (made once, 0600)."""
    given = (os.environ if env is None else env).get("IMAGECACHE_API_TOKEN", "").strip()
    if given:
        return given
    path = Path(settings.data_dir) / TOKEN_FILE
    if path.is_file():
        stored = path.read_text().strip()
        if stored:
            return stored
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()  # another process made it first
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def cookie_value(token: str) -> str:
    """The session cookie's value: proves the token was given, without being the token."""
    return hmac.new(token.encode(), b"imagecache read session", hashlib.sha256).hexdigest()


def _bearer(headers: Headers) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _cookie(headers: Headers) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def allowed(method: str, path: str, headers: Headers, web: WebSettings) -> bool:
    """True when this request may go on."""
    if method in READ_METHODS and (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)):
        return True
    bearer = _bearer(headers)
    if bearer is not None and hmac.compare_digest(bearer.encode(), web.token.encode()):
        return True
    if method not in READ_METHODS:
        return False
    if web.open_reads:
        return True
    cookie = _cookie(headers)
    return cookie is not None and hmac.compare_digest(
        cookie.encode(), cookie_value(web.token).encode()
    )


class TokenAuth:
    """ASGI middleware: answer 401 before routing when the request is not allowed."""

    def __init__(self, app: ASGIApp, web: WebSettings) -> None:
        self.app = app
        self.web = web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if allowed(scope["method"], scope["path"], headers, self.web):
            await self.app(scope, receive, send)
            return
        changing = scope["method"] not in READ_METHODS
        detail = (
            "send the API token as 'Authorization: Bearer <token>'"
            + ("" if changing else ", or sign in on the page")
            + "; the token is printed by `imagecache serve` and kept in the data folder's api-token"
        )
        response = problem(401, "authentication required", detail)
        response.headers["WWW-Authenticate"] = 'Bearer realm="imagecache"'
        await response(scope, receive, send)
