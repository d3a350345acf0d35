"""Auth: a bearer token for every change, closed reads by default, the page's cookie, limits."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ops.settings import Settings
from tests.web.conftest import AUTH, TOKEN, Site
from web.app import create_app, endpoints
from web.auth import COOKIE, load_or_create_token

SAMPLE_ID = "0123456789abcdef"


def _url(path: str) -> str:
    for name in ("collection_id", "job_id", "folder_id", "image_id"):
        path = path.replace("{" + name + "}", SAMPLE_ID)
    return path


CHANGING = [(e.method, _url(e.path)) for e in endpoints() if e.changes]
READS = [_url(e.path) for e in endpoints() if not e.changes and not e.public]


@pytest.mark.parametrize(("method", "url"), CHANGING)
def test_changes_need_the_token(generated: Site, method: str, url: str) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        r = generated.client.request(method, url, json={}, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("url", [*READS, "/metrics"])
def test_reads_are_closed_by_default(generated: Site, url: str) -> None:
    assert generated.client.get(url).status_code == 401
    assert generated.client.get(url, headers=AUTH).status_code != 401


def test_page_health_and_schema_are_open(generated: Site) -> None:
    for url in (
        "/",
        "/static/app.js",
        "/static/style.css",
        "/api/v1/health",
        "/api/v1/openapi.json",
    ):
        assert generated.client.get(url).status_code == 200, url


def test_open_reads_setting(generated: Site) -> None:
    open_web = create_app(generated.app, {**generated.env, "IMAGECACHE_OPEN_READS": "1"})
    with TestClient(open_web) as client:
        assert client.get("/api/v1/collections").status_code == 200
        assert client.get("/metrics").status_code == 200
        r = client.post("/api/v1/cache/regenerate", json={"all": True})
        assert r.status_code == 401  # changes still need the token


def test_the_session_cookie_opens_reads_but_never_changes(generated: Site) -> None:
    client = TestClient(generated.web)
    assert client.post("/api/v1/session").status_code == 401
    signed = client.post("/api/v1/session", headers=AUTH)
    assert signed.status_code == 200
    cookie = signed.cookies[COOKIE]
    assert cookie != TOKEN
    set_cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    # The cookie now travels with every request from this client
    assert client.get("/api/v1/collections").status_code == 200
    assert client.post("/api/v1/cache/regenerate", json={"all": True}).status_code == 401
    client.cookies.set(COOKIE, "forged")
    assert client.get("/api/v1/collections").status_code == 401


def test_bodies_are_size_limited(generated: Site) -> None:
    big = b'{"path": "' + b"x" * 70_000 + b'"}'
    r = generated.client.post(
        "/api/v1/collections", content=big, headers={**AUTH, "content-type": "application/json"}
    )
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"

    def chunks():  # no Content-Length: the limit holds while streaming too
        for _ in range(100):
            yield b" " * 1024

    r = generated.client.post("/api/v1/collections", content=chunks(), headers=AUTH)
    assert r.status_code == 413


def test_the_token_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings.from_env({"IMAGECACHE_DATA": str(tmp_path / "data")})
    first = load_or_create_token(settings, {})
    assert len(first) >= 32
    file = tmp_path / "data" / "api-token"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert load_or_create_token(settings, {}) == first
    assert load_or_create_token(settings, {"IMAGECACHE_API_TOKEN": "given"}) == "given"
