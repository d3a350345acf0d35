"""Who may do what: the API token, or a signed-in page session plus its anti-CSRF header.

- The token comes from IMAGECACHE_API_TOKEN (refused when set but blank), else from
  `<data dir>/api-token`, made once, whole, with mode 0600 (printed by `imagecache serve`).
  A token file that is empty or too short is refused: it would be a token anyone can guess.
- POST, PUT, PATCH and DELETE need `Authorization: Bearer <token>`, or the page's session
  cookie together with the session's `X-CSRF-Token` header: a cookie alone never
  authorises a change, so a cross-site form cannot make one.
- GET and HEAD need the header or the session cookie, unless IMAGECACHE_OPEN_READS=1.
- Signing in (`POST /api/v1/session`) takes the bearer header, not a session.
- The page, its static files, health, the OpenAPI document and `GET /api/v1/session` (which
  answers whether the caller is signed in) are always open.
"""

from __future__ import annotations

import hmac
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from domain.errors import ImageCacheError
from ops.settings import Settings
from web.responses import problem
from web.sessions import COOKIE as COOKIE  # the cookie's name, for callers of this module
from web.sessions import Sessions, cookie_of, csrf_matches
from web.settings import WebSettings

TOKEN_FILE = "api-token"
MIN_TOKEN = 16  # characters a token file must hold; a generated token has 43
SESSION_PATH = "/api/v1/session"
OPEN_PATHS = ("/", "/favicon.ico", "/api/v1/health", "/api/v1/openapi.json", SESSION_PATH)
OPEN_PREFIXES = ("/static/",)
READ_METHODS = ("GET", "HEAD")
ENV_TOKEN = "IMAGECACHE_API_TOKEN"


class TokenRefused(ImageCacheError):
    """The configured API token cannot be used."""


def _read_token(path: Path) -> str:
    """The token a token file holds; TokenRefused when it holds none worth the name."""
    try:
        stored = path.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError:
        stored = ""
    except OSError as exc:  # a folder in its place, no permission
        raise TokenRefused(
            f"cannot read the API token file {path}: {exc.strerror}",
            hint=f"make it a readable file, or delete it to have one made, or set {ENV_TOKEN}",
        ) from None
    if len(stored) < MIN_TOKEN:
        what = "is empty" if not stored else f"holds only {len(stored)} characters"
        raise TokenRefused(
            f"the API token file {path} {what}: a token needs at least {MIN_TOKEN}",
            hint="delete the file and start again to have a new token made, or write a"
            f" longer one into it, or set {ENV_TOKEN}",
        )
    return stored


def load_or_create_token(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """The API token: IMAGECACHE_API_TOKEN, else the data folder's token file (made once, 0600).

    The file appears whole or not at all: the token is written to a private temporary file
    which is then hard-linked into place, so a process starting at the same moment reads
    either no file (and links its own, losing to the first) or the complete token.
    """
    env = os.environ if env is None else env
    if ENV_TOKEN in env:
        given = env[ENV_TOKEN].strip()
        if not given:
            raise TokenRefused(
                f"{ENV_TOKEN} is set but blank",
                hint=f"unset it to use the data folder's {TOKEN_FILE}, or set a token",
            )
        return given
    path = Path(settings.data_dir) / TOKEN_FILE
    if path.exists():
        return _read_token(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{TOKEN_FILE}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if the name exists: never replaces a token in use
        except FileExistsError:
            pass  # another process linked its token first: that one is the token
        except OSError as exc:
            raise TokenRefused(
                f"cannot create {path}: {exc.strerror}",
                hint=f"check the data folder, or set {ENV_TOKEN}",
            ) from None
    finally:
        os.unlink(tmp)
    return _read_token(path)


def bearer_ok(headers: Headers, token: str) -> bool:
    """True when the request carries `Authorization: Bearer <the token>`."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    value = value.strip()
    return (
        scheme.lower() == "bearer"
        and bool(value)
        and hmac.compare_digest(value.encode(), token.encode())
    )


def is_open(method: str, path: str) -> bool:
    """Reads anyone may make: the page, its files, health, the schema, the session state."""
    return method in READ_METHODS and (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES))


class TokenAuth:
    """ASGI middleware: answer 401 before routing when the request is not allowed."""

    def __init__(self, app: ASGIApp, web: WebSettings, sessions: Sessions) -> None:
        self.app = app
        self.web = web
        self.sessions = sessions

    async def allowed(self, method: str, path: str, headers: Headers) -> bool:
        """True when this request may go on."""
        if is_open(method, path) or bearer_ok(headers, self.web.token):
            return True
        reading = method in READ_METHODS
        if reading and self.web.open_reads:
            return True
        sid = cookie_of(headers)
        if sid is None or (method, path) == ("POST", SESSION_PATH):
            return False
        if not reading and not csrf_matches(headers, sid):
            return False  # checked before the lookup: a forged change costs no database read
        return await run_in_threadpool(self.sessions.find, sid) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if await self.allowed(scope["method"], scope["path"], headers):
            await self.app(scope, receive, send)
            return
        changing = scope["method"] not in READ_METHODS
        detail = (
            "send the API token as 'Authorization: Bearer <token>'"
            + (
                ", or, signed in on the page, the session's X-CSRF-Token header"
                if changing
                else ", or sign in on the page"
            )
            + "; the token is printed by `imagecache serve` and kept in the data folder's"
            " api-token (a session ends after IMAGECACHE_SESSION_SECONDS or at sign-out)"
        )
        response = problem(401, "authentication required", detail)
        response.headers["WWW-Authenticate"] = 'Bearer realm="imagecache"'
        await response(scope, receive, send)
