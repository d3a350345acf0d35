"""The page's session: random, server-side, shared, expiring, ended by sign-out, CSRF-bound."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from tests.web.conftest import AUTH, TOKEN, Site
from web.app import create_app
from web.sessions import COLLECTION, COOKIE, CSRF_HEADER

SESSION = "/api/v1/session"
READ = "/api/v1/collections"
CHANGE = ("PATCH", "/api/v1/cache/folders/{fid}", {"priority": 3})
LIFETIME = 600.0


@dataclass
class Clock:
    """A clock the test moves by hand."""

    at: float = 1_000_000.0

    def now(self) -> float:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def web(generated: Site, clock: Clock) -> Iterator[TestClient]:
    """A client of the site's app, with a session lifetime of LIFETIME on a fake clock."""
    env = {**generated.env, "IMAGECACHE_SESSION_SECONDS": str(LIFETIME)}
    with TestClient(create_app(generated.app, env, clock=clock.now)) as client:
        yield client


def _sign_in(client: TestClient) -> tuple[str, str]:
    r = client.post(SESSION, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.cookies[COOKIE], r.json()["csrf"]


def _change(client: TestClient, generated: Site, **headers: str) -> int:
    method, url, body = CHANGE
    fid = generated.app.read.folders()[0]["id"]
    return client.request(method, url.format(fid=fid), json=body, headers=headers).status_code


def test_sign_in_makes_a_random_session_kept_hashed(generated: Site, web: TestClient) -> None:
    # When the page signs in twice
    first, csrf = _sign_in(web)
    web.cookies.clear()
    second, _ = _sign_in(web)

    # Then each session has a random id of its own, neither the token nor derived from it
    assert first != second and TOKEN not in (first, second)
    assert len(first) >= 32 and csrf not in (first, TOKEN)
    # And the database holds neither id, only their hashes
    stored = [str(d["_id"]) for d in generated.app.db[COLLECTION].find()]
    assert first not in stored and second not in stored and len(stored) >= 2


def test_a_session_reads_and_changes_only_with_its_csrf_value(
    generated: Site, web: TestClient
) -> None:
    # Given a signed-in client (its cookie now goes with every request)
    _, csrf = _sign_in(web)

    # Then reads work with the cookie alone
    assert web.get(READ).status_code == 200
    assert web.get("/metrics").status_code == 200
    # And a change with the cookie alone, or with a wrong value, is refused
    assert _change(web, generated) == 401
    assert _change(web, generated, **{CSRF_HEADER: "0" * 64}) == 401
    # While the cookie with the session's value works
    assert _change(web, generated, **{CSRF_HEADER: csrf}) == 200


def test_the_csrf_value_of_one_session_does_not_open_another(
    generated: Site, web: TestClient
) -> None:
    # Given two sessions: When one's cookie is sent with the other's value
    _, csrf_a = _sign_in(web)
    web.cookies.clear()
    _sign_in(web)
    # Then the change is refused
    assert _change(web, generated, **{CSRF_HEADER: csrf_a}) == 401


def test_a_reloaded_page_recovers_its_csrf_value(web: TestClient) -> None:
    # Given no session, GET /session says so
    none = web.get(SESSION)
    assert none.status_code == 200 and none.json() == {"signed_in": False}
    # Given a session: its cookie alone recovers the value (what the page does on reload)
    _, csrf = _sign_in(web)
    again = web.get(SESSION)
    assert again.json()["signed_in"] is True and again.json()["csrf"] == csrf
    assert again.headers["cache-control"] == "no-store"


def test_a_session_expires(generated: Site, web: TestClient, clock: Clock) -> None:
    # Given a session signed in now
    _, csrf = _sign_in(web)
    assert web.get(SESSION).json()["expires_at"] == clock.at + LIFETIME

    # When its lifetime has almost passed, it still works
    clock.at += LIFETIME - 1
    assert web.get(READ).status_code == 200

    # Then once it has passed, its cookie reads nothing and changes nothing
    clock.at += 1
    assert web.get(READ).status_code == 401
    assert _change(web, generated, **{CSRF_HEADER: csrf}) == 401
    assert web.get(SESSION).json() == {"signed_in": False}


def test_sign_out_ends_the_session_even_when_its_cookie_is_replayed(
    generated: Site, web: TestClient
) -> None:
    # Given a session, and a copy of its cookie kept by someone
    cookie, csrf = _sign_in(web)

    # When the page signs out (a change: it sends its value)
    out = web.delete(SESSION, headers={CSRF_HEADER: csrf})
    assert out.status_code == 200 and out.json() == {"signed_in": False}
    cleared = out.headers["set-cookie"].lower()
    assert cleared.startswith(f"{COOKIE}=") and "max-age=0" in cleared

    # Then the kept cookie, replayed with its value, opens nothing
    replay = TestClient(web.app)
    replay.cookies.set(COOKIE, cookie)
    assert replay.get(READ).status_code == 401
    assert _change(replay, generated, **{CSRF_HEADER: csrf}) == 401
    assert replay.get(SESSION).json() == {"signed_in": False}


def test_sign_out_needs_the_csrf_value(web: TestClient) -> None:
    # Given a session: a sign-out with the cookie alone (a cross-site request) is refused
    _sign_in(web)
    assert web.delete(SESSION).status_code == 401
    assert web.get(READ).status_code == 200  # and the session lives on


def test_signing_in_needs_the_token_not_a_session(web: TestClient) -> None:
    # Given a session: its cookie and value cannot start another one; the token can
    _, csrf = _sign_in(web)
    assert web.post(SESSION, headers={CSRF_HEADER: csrf}).status_code == 401
    assert web.post(SESSION, headers={"Authorization": "Bearer wrong"}).status_code == 401
    old = web.cookies[COOKIE]
    new, _ = _sign_in(web)
    # And signing in again ends the session the client had
    assert new != old
    stale = TestClient(web.app)
    stale.cookies.set(COOKIE, old)
    assert stale.get(READ).status_code == 401


def test_sessions_are_shared_by_every_serve_process(generated: Site, clock: Clock) -> None:
    # Given two web apps of one installation (as two `imagecache serve` would be)
    env = {**generated.env, "IMAGECACHE_SESSION_SECONDS": str(LIFETIME)}
    one = TestClient(create_app(generated.app, env, clock=clock.now))
    other = TestClient(create_app(generated.app, env, clock=clock.now))

    # When the page signs in on one, Then its cookie and value work on the other
    cookie, csrf = _sign_in(one)
    other.cookies.set(COOKIE, cookie)
    assert other.get(READ).status_code == 200
    assert _change(other, generated, **{CSRF_HEADER: csrf}) == 200
    # And signing out on the other ends it on the first too
    assert other.delete(SESSION, headers={CSRF_HEADER: csrf}).status_code == 200
    assert one.get(READ).status_code == 401


def test_expired_sessions_are_removed_at_the_next_sign_in(
    generated: Site, web: TestClient, clock: Clock
) -> None:
    # Given a session that expired
    _sign_in(web)
    sessions = generated.app.db[COLLECTION]
    clock.at += LIFETIME + 1
    assert sessions.count_documents({"expires_at": {"$lte": clock.at}}) >= 1
    # When anyone signs in, Then the expired ones are gone from the store
    _sign_in(TestClient(web.app))
    assert sessions.count_documents({"expires_at": {"$lte": clock.at}}) == 0


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_cookie_flags(generated: Site, scheme: str) -> None:
    # Given the app reached over http or https
    client = TestClient(generated.web, base_url=f"{scheme}://testserver")

    # When the page signs in
    r = client.post(SESSION, headers=AUTH)

    # Then the cookie is HttpOnly, SameSite=Strict, for the whole site, with a lifetime,
    # and Secure exactly when the request came over https
    flags = [f.strip().lower() for f in r.headers["set-cookie"].split(";")]
    assert flags[0].startswith(f"{COOKIE}=")
    assert {"httponly", "samesite=strict", "path=/"} <= set(flags)
    assert any(f.startswith("max-age=") and int(f.split("=")[1]) > 0 for f in flags)
    assert ("secure" in flags) is (scheme == "https")
    out = client.delete(SESSION, headers={CSRF_HEADER: r.json()["csrf"]})
    assert ("secure" in out.headers["set-cookie"].lower()) is (scheme == "https")


def test_the_session_lifetime_setting_is_checked(generated: Site) -> None:
    from domain.errors import InvalidInput

    with pytest.raises(InvalidInput, match="IMAGECACHE_SESSION_SECONDS"):
        create_app(generated.app, {**generated.env, "IMAGECACHE_SESSION_SECONDS": "0"})
