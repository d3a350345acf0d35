"""The outer edge of every answer: the Host check and the browser security headers.

- `HostCheck` answers 400 to a request whose Host header is not one of the server's
  names (IMAGECACHE_ALLOWED_HOSTS). A page on another site that rebinds its own DNS name
  to this machine reaches us under that name, so it is refused before anything is read.
  It also refuses a query string with raw bytes that are not UTF-8 (a client must
  percent-encode them): Starlette's URL would fail on it further in.
- `SecurityHeaders` adds a Content-Security-Policy (the page's own scripts, styles and
  images only, no framing, no <base>), X-Frame-Options, X-Content-Type-Options and
  Referrer-Policy to every answer, errors included.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.responses import problem
from web.settings import WebSettings

# The page loads only its own modules and stylesheet; styles set from script go through
# the CSSOM (element.style), which a CSP does not govern, so no inline style is needed.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)
# An API answer is data, never a document to run or embed.
API_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
PAGE_PATHS = ("/", "/favicon.ico")
PAGE_PREFIXES = ("/static/",)
COMMON = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


class HostCheck:
    """ASGI middleware: refuse (400) a Host header not naming this server, and a raw query
    string that is not UTF-8."""

    def __init__(self, app: ASGIApp, web: WebSettings) -> None:
        self.app = app
        self.web = web

    def refusal(self, scope: Scope) -> tuple[str, str] | None:
        """(title, detail) of the 400 this request gets, or None when it may go on."""
        host = Headers(scope=scope).get("host")
        if not self.web.host_allowed(host):
            said = (
                f"this server does not answer to the host name {host!r}"
                if host
                else "the request has no Host header"
            )
            return "unknown host", (
                f"{said}; reach the server by one of its names, or add this one to"
                " IMAGECACHE_ALLOWED_HOSTS (comma-separated) where it runs"
            )
        try:
            bytes(scope.get("query_string", b"")).decode("utf-8")
        except UnicodeDecodeError:
            return "invalid request", (
                "the query string holds bytes that are not UTF-8: percent-encode them"
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = self.refusal(scope) if scope["type"] == "http" else None
        if refused is None:
            await self.app(scope, receive, send)
        else:
            await problem(400, *refused)(scope, receive, send)


class SecurityHeaders:
    """ASGI middleware: add the CSP and framing, sniffing and referrer headers to answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        page = path in PAGE_PATHS or path.startswith(PAGE_PREFIXES)
        policy = PAGE_CSP if page else API_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-security-policy", policy)
                for name, value in COMMON.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
