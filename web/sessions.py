"""The page's sign-in sessions: a random id in an HttpOnly cookie, kept hashed in MongoDB.

A session starts when the page gives the API token once (`POST /api/v1/session`
with the bearer header) and ends when it signs out or its time is up. Its id is
random, so knowing the token file's age or the token itself does not give it,
and only its SHA-256 is stored: the database does not hold live cookies. The
store is a MongoDB collection of its own (`web_sessions`), outside the event
log: sessions are not library state, and every serve process of the
installation sees the same ones, so a sign-out anywhere ends it everywhere.

A cookie never authorises a change by itself. Each session has an anti-CSRF
value, an HMAC of its id, that the page holds in memory only and sends back in
the `X-CSRF-Token` header; a cross-site page can neither read it nor send it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database
from starlette.datastructures import Headers

COOKIE = "imagecache_session"
CSRF_HEADER = "x-csrf-token"
COLLECTION = "web_sessions"
MAX_ID = 128  # characters; a longer cookie is not one of ours, and is not looked up


@dataclass(frozen=True)
class Session:
    """A live session: the anti-CSRF value the page must send, and when it ends."""

    csrf: str
    expires_at: float


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def csrf_for(sid: str) -> str:
    """The session's anti-CSRF value: derived from its id, so it need not be stored."""
    return hmac.new(sid.encode(), b"imagecache csrf", hashlib.sha256).hexdigest()


def cookie_of(headers: Headers) -> str | None:
    """The session id the request's Cookie header carries, if any."""
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def csrf_matches(headers: Headers, sid: str) -> bool:
    """True when the request's X-CSRF-Token header is this session's value."""
    sent = headers.get(CSRF_HEADER, "")
    return bool(sent) and hmac.compare_digest(sent.encode(), csrf_for(sid).encode())


class Sessions:
    """Sessions in MongoDB with a fixed lifetime; `clock` gives the time (seconds)."""

    def __init__(self, db: Database[Any], lifetime: float, clock: Callable[[], float]) -> None:
        self._c = db[COLLECTION]
        self._lifetime = lifetime
        self._clock = clock

    def start(self) -> tuple[str, Session]:
        """A new session: its id (for the cookie only) and what the page may know of it."""
        now = self._clock()
        # Ended sessions are deleted on sign-out; expired ones here, so the store stays small.
        self._c.delete_many({"expires_at": {"$lte": now}})
        sid = secrets.token_urlsafe(32)
        expires = now + self._lifetime
        self._c.insert_one({"_id": _digest(sid), "started_at": now, "expires_at": expires})
        return sid, Session(csrf_for(sid), expires)

    def find(self, sid: str | None) -> Session | None:
        """The live session of this id; None when unknown, ended or expired."""
        if not sid or len(sid) > MAX_ID:
            return None
        doc = self._c.find_one({"_id": _digest(sid)})
        if doc is None or float(doc["expires_at"]) <= self._clock():
            return None
        return Session(csrf_for(sid), float(doc["expires_at"]))

    def end(self, sid: str | None) -> None:
        """End the session of this id: its cookie is worthless from now on, here and elsewhere."""
        if sid and len(sid) <= MAX_ID:
            self._c.delete_one({"_id": _digest(sid)})
